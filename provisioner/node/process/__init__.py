"""Processes: the compiled supervisor ``provisioner-shim`` (C sources in ``csrc/``, built
by ``shim_binary``), its spec and status files (``shimspec``), launching and stopping it
(``supervise``), leaf cgroups of one executable (``leaf``), ``/proc`` helpers (``procs``),
the log files the shim writes (``logs``), size limits of a command (``exec_limits``), and
cell namespaces with their holder process (``namespaces``, ``holder``). It owns every
process the node layer starts and the status and log files under the state directory. Of
the node layer it may import ``provisioner.node.cgroups`` and ``provisioner.node.types``;
not the store (``provisioner.node.state``: only the runtime records things), not ``oci``
or ``runtime``. Besides that the model, the names, the errors, ``provisioner.limits`` and
the package itself (``namespaces`` finds the package's folder for the holder's
``python -m``). ``./dev lint`` checks it: contracts ``node-rooms`` and
``store-is-the-runtimes``.
"""
