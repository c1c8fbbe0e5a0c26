"""``sammed2d serve``: the model process Slicer (or any client) talks to over HTTP.

Needs torch and the server extra (FastAPI, uvicorn); clients use the torch-free ``sammed2d.client``.
Entry points: ``app.create_app`` (the ASGI application) and ``main.serve`` (what the CLI runs).
Nothing is imported here, so the CLI can read ``security`` without loading the model stack.
"""
