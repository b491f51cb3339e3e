"""Control groups: finding the cgroup layout of the machine (``layout``: v2, v1 or hybrid),
one driver per version (``v2``, ``v1``) behind one interface (``base``), and the
provisioner's tree of cell cgroups with ownership marks and staging directories (``tree``).
It owns every directory under the provisioner's cgroup root. Of the node layer it may
import only ``provisioner.node.types``; besides that the model, the names, the errors and
``provisioner.cpulist`` (``./dev lint`` checks the rooms' order: contract ``node-rooms``).
"""
