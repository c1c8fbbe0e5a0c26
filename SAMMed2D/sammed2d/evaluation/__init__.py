"""Benchmark of models on labelled volumes and SAM-Med2D 2D sets, measured the way the papers do."""
