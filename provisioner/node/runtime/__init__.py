"""The node as the rest of the package sees it: :class:`~.layer.NodeLayer` (cells and
executables, recorded in the store), and what builds on it - pods (``pods``), persistent
executables (``persistent``), reading the node into a ``NodeState`` and reconciling the
store with the kernel (``observe``), and removing everything (``teardown``). It may import
every other room of the node layer, the model and the errors; the rooms never import it.
The package-level facade :mod:`provisioner.node` re-exports what callers use.
"""
