"""Executors: the one interface callers use to act on a node (``base.Executor``: observe,
plan, apply, logs, lock state, node id, close), a local implementation (in-process,
through the node layer) and a remote one (a daemon over gRPC), and ``choose``, which
opens the right one."""
