"""What the node remembers: the SQLite store (``store``, its tables in ``schema``, the
bounded connection pool in ``pool``), the writer lock that serialises every change
(``lock``), and the files of pushed Atomix drivers (``drivers``). It owns everything under
the state directory except the supervisor's status and log files. It may import the
model (``provisioner.model``, ``provisioner.state``, ``provisioner.names``), the errors
and ``provisioner.node.types``; nothing else of the node layer.
"""
