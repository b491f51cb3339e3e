"""The bounds of every number the node acts on, in one place.

The manifest schemas carry them (``manifest/overlay.py``: ``minimum`` / ``maximum`` /
``maxLength`` / ``maxItems``, and a ``duration`` format whose limit is checked with the
syntax), so a manifest out of range is refused at ``validate`` with its line and the
limit. The node layer clamps what it reads back from older state (a record in
``state.db``, a shim status file) to the same bounds, logging what it changed, so a value
stored before these limits existed can never crash a stop (see :func:`clamp`).
"""

from __future__ import annotations

import math

#: stopGracePeriod: time between SIGTERM and SIGKILL. An hour is far beyond any sane
#: shutdown; the SIGKILL of the whole leaf comes then at the latest.
MAX_STOP_GRACE_S = 3600.0
#: How long a shim gives a container runtime to exit by itself once its container is
#: killed (csrc/shim.h MAX_SETTLE_S).
MAX_SETTLE_S = 60.0
#: The longest text a duration field may have (``1h30m15s500ms`` is 13).
MAX_DURATION_CHARS = 32

#: cpu.weight (v2) and its v1 mapping (cpu.shares = weight * 1024 / 100).
MIN_CPU_WEIGHT, MAX_CPU_WEIGHT = 1, 10000
#: cpu.max quota per 1 s period: the kernel refuses below 1 ms; above 8192 CPUs' worth
#: (the largest NR_CPUS kernels are built with) it could never bind.
MIN_CPU_MAX_US, MAX_CPU_MAX_US = 1000, 8192 * 1_000_000

#: ``sh -c COMMAND``: the kernel refuses one argument over 128 KiB (MAX_ARG_STRLEN,
#: with its NUL); a character is at most 4 bytes of UTF-8.
MAX_COMMAND_CHARS = 32767
#: Environment: entries per executable / container, characters per value.
MAX_ENV_ENTRIES = 1024
MAX_ENV_VALUE_CHARS = 32767
#: A container's argv.
MAX_ARGV_ITEMS = 1024
#: Ports one container may declare.
MAX_CONTAINER_PORTS = 256
#: Containers per pod; dependsOn entries per resource; labels per resource.
MAX_CONTAINERS = 64
MAX_DEPENDS_ON = 256
MAX_LABELS = 256
#: An image reference (Docker's own limit on a whole reference is 255 for the name;
#: a local layout path may be longer).
MAX_IMAGE_CHARS = 4096

#: Steps an apply runs at once (threads).
MAX_PARALLELISM = 64

#: Restart back-off of the supervisor (node configuration, not the manifest).
MAX_BACKOFF_S = 3600.0
#: Log files of a supervised process (node configuration).
MAX_LOG_FILE_BYTES = 1 << 30
MAX_LOG_FILES_KEPT = 100
MAX_LOG_LINE_BYTES = 1 << 20


def clamp(value: float, low: float, high: float, what: str) -> float:
    """``value`` within ``[low, high]`` (NaN: ``high``), logging a warning when it was not.

    For numbers read back from state an older version wrote: out of range there must
    not stop the node from acting (stopping a process above all).
    """
    if not (math.isnan(value) or value > high or value < low):
        return value
    import logging  # only now: `validate` needs these bounds, not logging (~7 ms)

    log = logging.getLogger(__name__)
    if math.isnan(value) or value > high:
        log.warning("%s: %r is above the limit %s; using %s", what, value, high, high)
        return high
    log.warning("%s: %r is below the limit %s; using %s", what, value, low, low)
    return low


def format_seconds(seconds: float) -> str:
    """``3600.0`` -> ``1h``, ``90.0`` -> ``1m30s``, ``0.5`` -> ``500ms`` (for messages)."""
    whole = int(seconds)
    millis = round((seconds - whole) * 1000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s"),
                                          (millis, "ms")) if n]
    return "".join(parts) or "0s"
