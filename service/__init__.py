"""A gRPC service that classifies 3s and 7s with the model the MLflow registry's alias points at.

The server is `python -m service` (server.py and what it wires). Beside it, not part of it:
`client/` (the command-line client and its image preprocessing), `launcher.py` (`make run`) and
`protogen.py` (regenerates `generated/` from protos/).
"""
