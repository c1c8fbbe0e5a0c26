"""Qt-free logic of the SAMMed2DTraining module: testable with slicer-core, without the Slicer application."""
