"""``sammed2d web``: a Slicer-like page in the browser (trame-slicer) that drives the same interaction core
as the Segment Editor effect.

The page process holds the MRML scene and renders the views on the server (VTK, offscreen); the model
runs in a separate ``sammed2d serve`` process reached through the torch-free client. Nothing is imported
here, so the command line can read ``options`` without loading trame, VTK or torch.
"""
