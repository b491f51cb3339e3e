"""The node daemon: every seed API and the provisioner's own API over gRPC.

``server.py`` builds the server (unix socket by default, mutual TLS on TCP, per-identity
authorization); each ``*_service.py`` module is a thin servicer that converts protobuf to
the model (``provisioner/serde.py``), calls the node layer, and lets ``status.py`` map
domain errors to status codes in one place.
"""
