"""SAM-Med2D engine: models, checkpoints, predictor and tools behind the 3D Slicer extension.

Importing the package is cheap and torch-free; the model side is imported from its modules.
"""

__version__ = "0.1.0"
