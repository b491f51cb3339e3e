"""OCI images and containers: image layouts (``layout``), unpacking layers into a rootfs
(``unpack``), the image cache (``images``), runtime configs for runc (``config``),
mounts (``mounts``), containers run by runc under the supervisor (``containers``), a
pod's network namespace (``network``) and its bridge address, ports and /etc files
through the CNI plugins (``cni``, ``cni_pods``, ``cni_etc``), and the check that a
plan's images are usable (``preflight``). It owns the image cache, the bundles and the
pod network records under the state directory. It may import
``provisioner.node.process``, ``provisioner.node.cgroups``, ``provisioner.node.types``,
the model, ``provisioner.imageref``, ``provisioner.podnet``, ``provisioner.plan.steps``
and the errors; never ``provisioner.node.runtime``.
"""
