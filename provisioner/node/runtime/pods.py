"""Pods: groups of OCI containers, run with runc, each supervised like an executable.

A pod lives in a cell (``PodSpec.cell``; the root cell when empty), under that cell's
limits. Each container is a supervised process named ``<pod>.<container>`` (a name no
executable can have): its shim runs ``runc run`` in the foreground in the leaf
``_x.<pod>.<container>``, with the container itself one cgroup below
(``.../_x.<pod>.<container>/ctr``), so the shim's stop - SIGTERM, grace, kill
everything in the leaf and below - reaches every process of the container, and its
output lands in the container's log files like any executable's.

- allocate: resolve and unpack every container's image (:mod:`images`; local OCI
  layouts), make the pod's network namespace (:mod:`pod_network`), then record the
  pod. Nothing is started; a bad image fails here and nothing is recorded.
- start: for each container, the leaf, a bundle (an overlay root filesystem over the
  image and a runtime ``config.json``; :mod:`containers`) and the shim. A pod not
  allocated yet is allocated first.
- stop: stop the containers (all, or one by name); their records stay. Stopping all
  of them also removes the pod's network (start makes it again).
- free: stop, remove bundles (unmount), leaves, the network namespace and records.

The containers of a pod share its network (``spec.network``: loopback only, an
address on the node's pod bridge with published ports, or the host's; they reach each
other on 127.0.0.1) and its /etc/hosts and /etc/resolv.conf (:mod:`network`); each has
its own pid, mount, ipc, uts (the pod's name as hostname) and cgroup namespaces from
runc.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os

from provisioner.errors import AlreadyExists, InvalidArgument, NotFound
from provisioner.model import ContainerSpec, Kind, PodSpec
from provisioner.model_json import dumps, loads
from provisioner.names import check_dns_label, container_process_name
from provisioner.node.cgroups.layout import executable_leaf
from provisioner.node.oci.cni_etc import add_mounts
from provisioner.node.oci.cni_pods import PodNetworks
from provisioner.node.oci.config import HOST_NETWORK
from provisioner.node.oci.containers import (
    RUNC_SETTLE_S,
    container_command,
    prepare_bundle,
    remove_bundle,
    remove_pod_dir,
    remove_runc_cgroups,
)
from provisioner.node.oci.network import check_pod_network, netns_name, netns_path
from provisioner.node.process.shimspec import TERMINAL_STATES, ShimSpec, ShimStatus
from provisioner.node.process.supervise import request_stop, shim_alive
from provisioner.node.runtime.layer import NodeLayer, stopped_record

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from provisioner.node.oci.images import Image, ImageStore

#: The cgroup of a container, below its shim's leaf (runc creates and removes it).
CONTAINER_CGROUP = "ctr"


class Pods:
    """Pod operations on a node layer (its store, cgroups and state directory)."""

    def __init__(self, layer: NodeLayer) -> None:
        self.layer = layer
        self.networks = PodNetworks(layer.config.state_dir, layer.cgroups.root_name,
                                    layer.config.pod_subnet)

    @functools.cached_property
    def images(self) -> ImageStore:
        """The node's unpacked images; made (and :mod:`images` loaded, ~1 ms) on first
        use: stopping and freeing a pod read none."""
        from provisioner.node.oci.images import ImageStore

        return ImageStore(self.layer.config.state_dir, self.layer.config.registries)

    # -- lifecycle -----------------------------------------------------------------
    def allocate(self, spec: PodSpec, manifest_set: str = "") -> bool:
        """Unpack the images and record the pod; False if it was recorded as it is."""
        name = self._check(spec)
        applied = self.layer.applied_spec(Kind.POD, name)
        if applied is not None and _kernel_side(applied) != _kernel_side(spec):
            raise AlreadyExists(f"pod {name!r} exists with other containers, cell or "
                                "network; free it first")
        digests = {}
        for container in spec.containers:
            image = self.images.pull(container.image, container.registry,
                                     container.pull_policy)
            image_user(image)  # a user the image does not know fails here, not at start
            _args(container, image)  # likewise a container with nothing to run
            digests[container.name] = image.digest
        self.networks.setup(spec)
        self._remember_images(name, digests)
        if applied is not None and dumps(applied) == dumps(spec):
            return False
        self.layer.record(spec, manifest_set, "allocated" if applied is None else "recorded")
        return applied is None

    def start(self, spec: PodSpec, manifest_set: str = "") -> list[ShimStatus]:
        """Start every container that is not running; their statuses."""
        name = self._check(spec)
        if self.layer.applied_spec(Kind.POD, name) is None:
            self.allocate(spec, manifest_set)
        mounts = self.networks.setup(spec)
        started = []
        for container in spec.containers:
            started.append(self._start_container(spec, container, mounts))
        with self.layer.store.transaction() as store:
            store.record_event("Pod", name, "started",
                               ", ".join(f"{c.name} pid {s.child_pid}"
                                         for c, s in zip(spec.containers, started, strict=True)))
        return started

    def stop(self, pod: str, container: str | None = None) -> list[ShimStatus]:
        """Stop the pod's containers (or one of them); their final statuses."""
        spec = self.applied(pod)
        names = [c.name for c in spec.containers]
        if container is not None and check_dns_label(container, "container name") not in names:
            raise NotFound(f"pod {pod!r} has no container {container!r} "
                           f"(it has {', '.join(names)})")
        finals = self._stop_containers(spec, names if container is None else [container])
        if container is None:  # nothing runs in it: its address, ports and rules go too
            self.networks.teardown(pod)
        with self.layer.store.transaction() as store:
            store.record_event("Pod", pod, "stopped", container or "")
        return finals

    def free(self, pod: str) -> None:
        """Stop everything of the pod and remove its bundles, leaves and records; its
        containers' logs are retired (``logs/_deleted/<pod>.<container>``, kept for a
        post-mortem until a later process of that name is deleted)."""
        spec = self.applied(pod)
        state_dir = self.layer.config.state_dir
        self._stop_containers(spec, [c.name for c in spec.containers])
        for container in spec.containers:
            remove_bundle(state_dir, pod, container.name)
            process = container_process_name(pod, container.name)
            self.layer.remove_leaf(spec.cell, process)
            self.layer.remove_status_files(process)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._images_file(pod))
        self.networks.teardown(pod)
        remove_pod_dir(state_dir, pod)
        with self.layer.store.transaction() as store:
            for container in spec.containers:
                store.delete_process(container_process_name(pod, container.name))
            store.delete_resource(Kind.POD, pod)
            store.record_event("Pod", pod, "freed")
            others = [r for r in store.list_resources(Kind.POD)
                      if getattr(loads(r.spec_json), "cell", None) == spec.cell]
        if not others:  # runc's directories for this cell in hierarchies we do not manage
            remove_runc_cgroups(self.layer.cgroups.root_name, spec.cell)
        for container in spec.containers:  # a later pod of that name logs afresh
            self.layer.retire_logs(container_process_name(pod, container.name))

    # -- queries -------------------------------------------------------------------
    def free_cell(self, cell: str) -> None:
        """Free a cell with everything in it: its pods, then (by the node layer) its
        executables and nested cells."""
        for pod in self.layer.pods_in_cell(cell):
            self.free(pod)
        self.layer.free_cell(cell)

    def applied(self, pod: str) -> PodSpec:
        """Pod ``pod`` as applied; NotFound when the node has no such pod."""
        spec = self.layer.applied_spec(Kind.POD, check_dns_label(pod, "pod name"))
        if not isinstance(spec, PodSpec):
            raise NotFound(f"pod {pod!r} does not exist")
        return spec

    def image_digests(self, pod: str) -> dict[str, str]:
        """The manifest digest of each container's image (by container name), as
        unpacked at the pod's allocate; empty when unknown."""
        try:
            with open(self._images_file(pod), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def statuses(self, spec: PodSpec) -> list[tuple[ContainerSpec, ShimStatus | None]]:
        """Each container of ``spec`` with its supervisor status (None: never started)."""
        return [(c, self.layer.read_shim_status(container_process_name(spec.name, c.name)))
                for c in spec.containers]

    # -- one container -------------------------------------------------------------
    def _check(self, spec: PodSpec) -> str:
        name = check_dns_label(spec.name, "pod name")
        if not spec.containers:
            raise InvalidArgument(f"pod {name!r} has no containers")
        seen: set[str] = set()
        for container in spec.containers:
            if check_dns_label(container.name, "container name") in seen:
                raise InvalidArgument(f"pod {name!r}: container {container.name!r} twice")
            seen.add(container.name)
        check_pod_network(spec)
        if spec.cell and self.layer.store.get_resource(Kind.CELL, spec.cell) is None:
            raise NotFound(f"cell {spec.cell!r} of pod {name!r} does not exist")
        return name

    def _start_container(self, spec: PodSpec, container: ContainerSpec,
                         mounts: list[dict[str, Any]]) -> ShimStatus:
        layer = self.layer
        process = container_process_name(spec.name, container.name)
        old = layer.read_shim_status(process)
        if old is not None and shim_alive(old) and old.state not in TERMINAL_STATES:
            return old  # running already: starting a pod starts what is not running

        def prepare() -> ShimSpec:
            if old is not None:
                request_stop(old)  # kills whatever a dead supervisor left behind
            image = self._image(spec.name, container)
            uid, gid = image_user(image)
            leaf_name = executable_leaf(process)
            leaf = layer.cgroups.create_leaf(spec.cell, leaf_name)
            bundle = prepare_bundle(
                layer.config.state_dir, spec.name, container.name,
                rootfs_lower=image.rootfs, args=_args(container, image),
                env=_env(container, image),
                cwd=container.working_dir or image.config.working_dir or "/",
                cgroups_path=self._cgroups_path(spec.cell, leaf_name), hostname=spec.name,
                uid=uid, gid=gid,
                netns=HOST_NETWORK if spec.host_network else netns_path(
                    self._netns(spec.name)))
            add_mounts(bundle, mounts)  # the pod's /etc/hosts and /etc/resolv.conf
            return ShimSpec(
                name=process, command=container_command(layer.config.state_dir, bundle,
                                                        process),
                leaf=leaf, log_dir=layer.log_dir(process),
                status_file=layer.status_file(process),
                restart_policy=spec.restart_policy.value, stop_grace_s=spec.stop_grace_s,
                log_limits=layer.config.log_limits,
                backoff_base_s=layer.config.backoff_base_s,
                backoff_cap_s=layer.config.backoff_cap_s, settle_s=RUNC_SETTLE_S)

        return layer.launch_process(process, spec.cell, prepare)

    def _stop_containers(self, spec: PodSpec, names: list[str]) -> list[ShimStatus]:
        """Stop the named containers together: every shim is asked first, then each is
        waited for, so a pod's stop takes one grace period, not one per container."""
        statuses = [(name, self.layer.read_shim_status(container_process_name(spec.name,
                                                                              name)))
                    for name in names]
        for _name, status in statuses:
            if status is not None:
                request_stop(status, wait=False)
        finals = []
        for name, status in statuses:
            process = container_process_name(spec.name, name)
            final = request_stop(status) if status is not None else None
            with self.layer.store.transaction() as store:
                if store.get_process(process) is not None:
                    store.put_process(stopped_record(process, spec.cell, final))
            if final is not None:
                finals.append(final)
        return finals

    def _images_file(self, pod: str) -> str:
        return os.path.join(self.layer.config.state_dir, "pods", pod, "images.json")

    def _remember_images(self, pod: str, digests: dict[str, str]) -> None:
        """The digest each container's image had at allocate, for :meth:`_image`."""
        path = self._images_file(pod)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(digests, f)
        os.replace(tmp, path)

    def _image(self, pod: str, container: ContainerSpec) -> Image:
        """The container's image: pulled (cached unless its layout changed), or - when
        its layout is gone or broken now - the one unpacked at allocate. A registry
        image is the one allocate pulled (its pull policy applied there), pulled again
        only if that one is gone."""
        remembered = self._remembered_image(pod, container)
        if not container.image.startswith(("oci:", "/")) and remembered is not None:
            return remembered
        try:
            return self.images.pull(container.image, container.registry,
                                    container.pull_policy)
        except (NotFound, InvalidArgument):
            if remembered is None:
                raise
            return remembered

    def _remembered_image(self, pod: str, container: ContainerSpec) -> Image | None:
        """The image unpacked for ``container`` at allocate, if it is still here."""
        try:
            with open(self._images_file(pod), encoding="utf-8") as f:
                digest = json.load(f).get(container.name, "")
        except (OSError, ValueError, AttributeError):
            digest = ""
        return self.images.cached(str(digest), container.image) if digest else None

    def _netns(self, pod: str) -> str:
        return netns_name(self.layer.cgroups.root_name, pod)

    def _cgroups_path(self, cell: str, leaf_name: str) -> str:
        """runc's cgroupsPath: below the leaf, relative to each hierarchy's mount."""
        parts = [self.layer.cgroups.root_name, *(cell.split("/") if cell else []),
                 leaf_name, CONTAINER_CGROUP]
        return "/" + "/".join(parts)


def _args(container: ContainerSpec, image: Image) -> list[str]:
    args = list(container.command) or [*image.config.entrypoint, *image.config.cmd]
    if not args:
        raise InvalidArgument(f"container {container.name!r}: no command, and its image "
                              f"{container.image!r} names none (Entrypoint / Cmd)")
    return args


def _env(container: ContainerSpec, image: Image) -> list[str]:
    """The image's environment, overridden by the container's."""
    merged = dict(entry.partition("=")[::2] for entry in image.config.env)
    merged.update(dict(container.env))
    merged.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return [f"{key}={value}" for key, value in merged.items()]


def image_user(image: Image) -> tuple[int, int]:
    """The uid and gid the image's ``User`` asks for (``name``, ``uid``, ``name:group``,
    ``uid:gid``; names looked up in the image's /etc/passwd and /etc/group); root when
    it names none. InvalidArgument for a name the image does not know."""
    user, _, group = image.config.user.partition(":")
    if not user:
        return 0, 0
    passwd = _table(image.rootfs, "passwd")
    if user.isdigit():
        uid = int(user)
        gid = next((int(e[3]) for e in passwd.values() if e[2] == user and e[3].isdigit()), 0)
    elif user in passwd and passwd[user][2].isdigit() and passwd[user][3].isdigit():
        uid, gid = int(passwd[user][2]), int(passwd[user][3])
    else:
        raise InvalidArgument(f"image {image.reference!r} runs as user {user!r}, which its "
                              "/etc/passwd does not name")
    if group:
        groups = _table(image.rootfs, "group")
        if group.isdigit():
            gid = int(group)
        elif group in groups and groups[group][2].isdigit():
            gid = int(groups[group][2])
        else:
            raise InvalidArgument(f"image {image.reference!r} runs as group {group!r}, which "
                                  "its /etc/group does not name")
    return uid, gid


def _table(rootfs: str, name: str) -> dict[str, list[str]]:
    """``/etc/passwd`` or ``/etc/group`` of an unpacked image, by name (missing: empty).
    Read by path inside the image root, never following a link out of it."""
    path = os.path.join(rootfs, "etc", name)
    if os.path.islink(path) or os.path.islink(os.path.dirname(path)):
        return {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = [line.rstrip("\n").split(":") for line in f if ":" in line]
    except OSError:
        return {}
    return {row[0]: row for row in rows if len(row) >= 4}


def _kernel_side(spec: object) -> tuple[object, ...]:
    """What cannot change without freeing the pod: its containers, its cell and its
    network."""
    assert isinstance(spec, PodSpec)
    return (spec.containers, spec.cell, spec.host_network, spec.network)
