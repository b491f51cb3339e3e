"""The operating-system layer: the only code of the package that touches the kernel.

It lives in rooms, each a sub-package whose ``__init__`` says what it owns and what it
may import; from the bottom up:

- :mod:`~provisioner.node.types` - small value types the rooms share;
- :mod:`~provisioner.node.state` - the SQLite store, its schema, the writer lock, pushed
  driver files;
- :mod:`~provisioner.node.cgroups` - cgroup v2 and v1 drivers, the cgroup tree;
- :mod:`~provisioner.node.process` - the supervisor (``provisioner-shim``, C sources in
  ``process/csrc``), leaves, logs, namespaces and their holder;
- :mod:`~provisioner.node.oci` - OCI images (layouts, unpacking), containers with runc,
  pod networking, the plan's image pre-flight;
- :mod:`~provisioner.node.runtime` - :class:`NodeLayer` (cells and executables) and what
  builds on it: pods, persistent executables, command execution, observation, teardown.

This module is the facade the rest of the package imports (``from provisioner.node import
NodeLayer``); a name is loaded on first use, so importing the facade costs nothing until
a command really needs the node. Code outside ``provisioner.node`` imports only from here
(``./dev lint`` checks it); tests may reach into the rooms.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from provisioner.node.cgroups.base import (
        executable_leaf as executable_leaf,
    )
    from provisioner.node.cgroups.base import (
        same_limits as same_limits,
    )
    from provisioner.node.oci.image_info import (
        ImageInfo as ImageInfo,
    )
    from provisioner.node.oci.preflight import (
        check_plan as check_plan,
    )
    from provisioner.node.process import (
        leaf as leaf,
    )
    from provisioner.node.process.exec_limits import (
        check_exec_size as check_exec_size,
    )
    from provisioner.node.process.logs import (
        STDERR as STDERR,
    )
    from provisioner.node.process.logs import (
        STDOUT as STDOUT,
    )
    from provisioner.node.process.logs import (
        LogLine as LogLine,
    )
    from provisioner.node.process.logs import (
        LogReader as LogReader,
    )
    from provisioner.node.process.logs import (
        LogRing as LogRing,
    )
    from provisioner.node.process.shimspec import (
        DEFAULT_PATH as DEFAULT_PATH,
    )
    from provisioner.node.process.shimspec import (
        ShimStatus as ShimStatus,
    )
    from provisioner.node.process.supervise import (
        is_running as is_running,
    )
    from provisioner.node.runtime import (
        persistent as persistent,
    )
    from provisioner.node.runtime.commands import (
        EXEC_LEAF_PREFIX as EXEC_LEAF_PREFIX,
    )
    from provisioner.node.runtime.commands import (
        MAX_OUTPUT_BYTES as MAX_OUTPUT_BYTES,
    )
    from provisioner.node.runtime.commands import (
        ExecResult as ExecResult,
    )
    from provisioner.node.runtime.commands import (
        cleanup_exec_leaves as cleanup_exec_leaves,
    )
    from provisioner.node.runtime.commands import (
        run_command as run_command,
    )
    from provisioner.node.runtime.image_use import (
        list_node_images as list_node_images,
    )
    from provisioner.node.runtime.image_use import (
        prune_node_images as prune_node_images,
    )
    from provisioner.node.runtime.layer import (
        NodeConfig as NodeConfig,
    )
    from provisioner.node.runtime.layer import (
        NodeLayer as NodeLayer,
    )
    from provisioner.node.runtime.layer import (
        log_path as log_path,
    )
    from provisioner.node.runtime.layer import (
        status_path as status_path,
    )
    from provisioner.node.runtime.observe import (
        observe as observe,
    )
    from provisioner.node.runtime.observe import (
        reconcile as reconcile,
    )
    from provisioner.node.runtime.persistent import (
        check_not_persistent as check_not_persistent,
    )
    from provisioner.node.runtime.persistent import (
        restart_enabled as restart_enabled,
    )
    from provisioner.node.runtime.pods import (
        Pods as Pods,
    )
    from provisioner.node.state.drivers import (
        CHUNK_BYTES as CHUNK_BYTES,
    )
    from provisioner.node.state.drivers import (
        DriverKey as DriverKey,
    )
    from provisioner.node.state.drivers import (
        DriverStore as DriverStore,
    )
    from provisioner.node.state.drivers import (
        DriverTooLarge as DriverTooLarge,
    )
    from provisioner.node.state.drivers import (
        driver_key as driver_key,
    )
    from provisioner.node.state.lock import (
        LockHolder as LockHolder,
    )
    from provisioner.node.state.lock import (
        WriterLock as WriterLock,
    )
    from provisioner.node.state.lock import (
        read_holder as read_holder,
    )
    from provisioner.node.state.store import Event as _StoreEvent
    from provisioner.node.types import (
        RegistryOptions as RegistryOptions,
    )

    StoreEvent = _StoreEvent

#: Every name of the facade -> (module, attribute in it; None for the module itself).
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "same_limits": ("provisioner.node.cgroups.base", "same_limits"),
    "check_plan": ("provisioner.node.oci.preflight", "check_plan"),
    "ImageInfo": ("provisioner.node.oci.image_info", "ImageInfo"),
    "executable_leaf": ("provisioner.node.cgroups.base", "executable_leaf"),
    "ShimStatus": ("provisioner.node.process.shimspec", "ShimStatus"),
    "leaf": ("provisioner.node.process.leaf", None),
    "check_exec_size": ("provisioner.node.process.exec_limits", "check_exec_size"),
    "STDERR": ("provisioner.node.process.logs", "STDERR"),
    "STDOUT": ("provisioner.node.process.logs", "STDOUT"),
    "LogLine": ("provisioner.node.process.logs", "LogLine"),
    "LogReader": ("provisioner.node.process.logs", "LogReader"),
    "LogRing": ("provisioner.node.process.logs", "LogRing"),
    "DEFAULT_PATH": ("provisioner.node.process.shimspec", "DEFAULT_PATH"),
    "is_running": ("provisioner.node.process.supervise", "is_running"),
    "persistent": ("provisioner.node.runtime.persistent", None),
    "check_not_persistent": ("provisioner.node.runtime.persistent", "check_not_persistent"),
    "restart_enabled": ("provisioner.node.runtime.persistent", "restart_enabled"),
    "NodeConfig": ("provisioner.node.runtime.layer", "NodeConfig"),
    "RegistryOptions": ("provisioner.node.types", "RegistryOptions"),
    "NodeLayer": ("provisioner.node.runtime.layer", "NodeLayer"),
    "log_path": ("provisioner.node.runtime.layer", "log_path"),
    "status_path": ("provisioner.node.runtime.layer", "status_path"),
    "EXEC_LEAF_PREFIX": ("provisioner.node.runtime.commands", "EXEC_LEAF_PREFIX"),
    "MAX_OUTPUT_BYTES": ("provisioner.node.runtime.commands", "MAX_OUTPUT_BYTES"),
    "ExecResult": ("provisioner.node.runtime.commands", "ExecResult"),
    "cleanup_exec_leaves": ("provisioner.node.runtime.commands", "cleanup_exec_leaves"),
    "run_command": ("provisioner.node.runtime.commands", "run_command"),
    "observe": ("provisioner.node.runtime.observe", "observe"),
    "reconcile": ("provisioner.node.runtime.observe", "reconcile"),
    "Pods": ("provisioner.node.runtime.pods", "Pods"),
    "list_node_images": ("provisioner.node.runtime.image_use", "list_node_images"),
    "prune_node_images": ("provisioner.node.runtime.image_use", "prune_node_images"),
    "CHUNK_BYTES": ("provisioner.node.state.drivers", "CHUNK_BYTES"),
    "DriverKey": ("provisioner.node.state.drivers", "DriverKey"),
    "DriverStore": ("provisioner.node.state.drivers", "DriverStore"),
    "DriverTooLarge": ("provisioner.node.state.drivers", "DriverTooLarge"),
    "driver_key": ("provisioner.node.state.drivers", "driver_key"),
    "LockHolder": ("provisioner.node.state.lock", "LockHolder"),
    "WriterLock": ("provisioner.node.state.lock", "WriterLock"),
    "read_holder": ("provisioner.node.state.lock", "read_holder"),
    "StoreEvent": ("provisioner.node.state.store", "Event"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load a facade name from its room on first use (PEP 562)."""
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The facade's names (for ``dir()`` and completion)."""
    return __all__
