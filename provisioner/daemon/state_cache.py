"""GetState's answer, observed once and shared while nothing it shows has changed.

Observing the node reads, for every resource, the store, cgroupfs, /proc and a shim's
status file: a few milliseconds of Python for a handful of resources, which 50 clients
asking at once turned into a queue for the GIL (GetState p99 was 540 ms). Now:

* An answer is reused while its **key** is unchanged and it is younger than
  ``ttl_s``. The key is the store's generation (every change the provisioner makes)
  and the modification time of the shim status folder ``<state_dir>/run`` (every shim
  writes its status there with a rename: a process starting, exiting, restarting or
  stopping changes it), plus whether each recorded driver's file is there (a stat
  each). What none of these shows - a cgroup changed or removed by hand, a namespace
  holder or a shim killed by hand - shows within ``ttl_s``.
* One observation at a time: callers arriving while one runs wait for it and share its
  answer, instead of all observing at once.
* An answer whose folder time is very recent is not reused: the kernel's file times
  are coarse (a clock tick), so a status written in the same tick after the folder was
  looked at would leave the key unchanged (git's "racily clean" index has the same
  guard).

``ttl_s = 0`` turns the cache off (every call observes).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from provisioner.model import DriverSpec, Kind
from provisioner.model_json import loads
from provisioner.node import DriverStore, NodeLayer, driver_key
from provisioner.records import record

__all__ = ["RACY_NS", "ObservedCache"]

T = TypeVar("T")
#: A folder time this close to the observation's start may hide a later write.
RACY_NS = 50_000_000


@record
class _Entry(Generic[T]):
    key: tuple[int, int]
    drivers: tuple[tuple[str, bool], ...]  # each recorded driver's file, and if it was there
    at: float  # time.monotonic() when the observation started
    value: T


class ObservedCache(Generic[T]):
    """``make()`` (an observation of ``layer``) shared as the module doc says."""

    def __init__(self, layer: NodeLayer, make: Callable[[], T], ttl_s: float) -> None:
        self.layer, self.make, self.ttl_s = layer, make, ttl_s
        self._lock = threading.Lock()
        self._entry: _Entry[T] | None = None
        self.observations = 0  # how many times make() ran (for tests)

    def _key(self) -> tuple[int, int]:
        """One query and one stat: what a hit costs besides the driver files."""
        try:
            mtime = os.stat(self.layer.runtime_dir).st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        return self.layer.store.generation(), mtime

    def _drivers(self) -> tuple[tuple[str, bool], ...]:
        files = DriverStore(self.layer.config.state_dir)
        specs = [loads(r.spec_json) for r in self.layer.store.list_resources(Kind.DRIVER)]
        paths = [files.path(driver_key(s)) for s in specs if isinstance(s, DriverSpec)]
        return tuple((path, os.path.isfile(path)) for path in paths)

    def _fresh(self, entry: _Entry[T] | None, key: tuple[int, int]) -> bool:
        return (entry is not None and entry.key == key
                and time.monotonic() - entry.at < self.ttl_s
                and all(os.path.isfile(path) == there for path, there in entry.drivers))

    def get(self) -> T:
        """The cached value while it is fresh (and the node unchanged), else a new one."""
        if self.ttl_s <= 0:
            self.observations += 1
            return self.make()
        entry = self._entry
        if self._fresh(entry, self._key()):
            assert entry is not None
            return entry.value
        with self._lock:  # one observation at a time; latecomers share it
            key = self._key()
            entry = self._entry
            if self._fresh(entry, key):
                assert entry is not None
                return entry.value
            started, wall = time.monotonic(), time.time_ns()
            drivers = self._drivers()  # before: a driver deleted meanwhile is seen next
            value = self.make()
            self.observations += 1
            racy = wall - key[1] < RACY_NS
            self._entry = None if racy else _Entry(key, drivers, started, value)
            return value
