"""Qt-free logic of the SAMMed2D Slicer modules (testable without the Slicer application)."""
