"""Control groups: finding the cgroup layout of the machine (``layout``: v2, v1 or hybrid),
one driver per version (``v2``, ``v1``) behind one interface (``base``), and the
provisioner's tree of cell cgroups with ownership marks and staging directories (``tree``).
It owns every directory under the provisioner's cgroup root. It may import the model, the
names, the errors, ``provisioner.cpulist`` and ``provisioner.node.types``; not the other
rooms.
"""
