"""Processes: the compiled supervisor ``provisioner-shim`` (C sources in ``csrc/``, built
by ``shim_binary``), its spec and status files (``shimspec``), launching and stopping it
(``supervise``), leaf cgroups of one executable (``leaf``), ``/proc`` helpers (``procs``),
the log files the shim writes (``logs``), size limits of a command (``exec_limits``), and
cell namespaces with their holder process (``namespaces``, ``holder``). It owns every
process the node layer starts and the status and log files under the state directory. It
may import ``provisioner.node.cgroups``, ``provisioner.node.types``, the model, the names,
the errors and ``provisioner.limits``.
"""
