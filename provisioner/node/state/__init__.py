"""What the node remembers: the SQLite store (``store``, its tables in ``schema``, the
bounded connection pool in ``pool``), the writer lock that serialises every change
(``lock``), and the files of pushed Atomix drivers (``drivers``). It owns everything under
the state directory except the supervisor's status and log files. Of the node layer it
may import only ``provisioner.node.types``, and only ``provisioner.node.runtime`` imports
it; besides that the model (``provisioner.model``, ``provisioner.state``,
``provisioner.names``) and the errors (``./dev lint``: contracts ``node-rooms`` and
``store-is-the-runtimes``).
"""
