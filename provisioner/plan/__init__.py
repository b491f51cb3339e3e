"""The plan: ordered steps from desired state to node state (pure data, no I/O)."""
