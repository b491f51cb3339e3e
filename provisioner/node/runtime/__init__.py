"""The node as the rest of the package sees it: :class:`~.layer.NodeLayer` (cells and
executables, recorded in the store), and what builds on it - pods (``pods``), persistent
executables (``persistent``), the images pods use and the image cache listed and
pruned around them (``image_use``), one-off commands in a leaf cgroup of their own
(``commands``), reading the node into a ``NodeState`` and reconciling the store with the
kernel (``observe``), and removing everything (``teardown``). It is the top room: it may
import every other room of the node layer (and is the only one that writes the store),
the model (``provisioner.model``, ``provisioner.model_json``, ``provisioner.state``), the
names and the errors; no room imports it (``./dev lint``: contract ``node-rooms``). The
package-level facade :mod:`provisioner.node` re-exports what callers use.
"""
