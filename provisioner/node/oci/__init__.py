"""OCI images and containers: image layouts (``layout``), unpacking layers into a rootfs
(``unpack``), the image cache (``images``), registry pulls with skopeo (``pull``,
``registry_images``), runtime configs for runc (``config``),
mounts (``mounts``), containers run by runc under the supervisor (``containers``), a
pod's network namespace (``network``) and its bridge address, ports and /etc files
through the CNI plugins (``cni``, ``cni_pods``, ``cni_etc``), the check that a plan's
images are usable (``preflight``), and listing and pruning the image cache
(``image_gc``). It owns the image cache, the bundles and the pod network
records under the state directory. Of the node layer it may import
``provisioner.node.process``, ``provisioner.node.cgroups`` and ``provisioner.node.types``;
never ``provisioner.node.runtime``, nor the store (``provisioner.node.state``: only the
runtime records things). Besides that the model, the names, ``provisioner.imageref``,
``provisioner.podnet``, ``provisioner.plan.steps``, ``provisioner.image_state`` (the image
records ``image_gc`` returns) and the errors (``./dev lint`` checks
it: contracts ``node-rooms`` and ``store-is-the-runtimes``).
"""
