"""SHA-256 (and file digests) of small inputs without loading OpenSSL.

``import hashlib`` loads OpenSSL's libcrypto, ~5 ms of CPU per process: more than
the rest of a pod's image pre-flight, which hashes a manifest of a few hundred bytes.
CPython's own SHA-256 (``_sha2``; ``_sha256`` before 3.12) is already loaded with the
interpreter's modules at a tenth of that, but is ~8x slower per byte than OpenSSL's
(0.8 against 6 ms per MiB here). So input up to :data:`SMALL` bytes is hashed by the
built-in one, unless ``hashlib`` is loaded already (then it is free), and anything
larger by ``hashlib``. Digests are the same either way.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from io import BufferedReader
    from typing import Any

#: The most bytes hashed without hashlib: well under what loading OpenSSL costs (a
#: MiB), well over an image's manifest, index or configuration.
SMALL = 64 * 1024


def _builtin_sha256() -> Callable[..., Any] | None:
    """CPython's own SHA-256 constructor, if this build has it."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            return None
    constructor: Callable[..., Any] = sha256
    return constructor


def sha256(data: bytes = b"", size_hint: int | None = None) -> Any:
    """A SHA-256 hash object (``hashlib.sha256``'s interface) started with ``data``;
    ``size_hint``: how many bytes will be hashed in all (default: ``len(data)``)."""
    size = len(data) if size_hint is None else size_hint
    if size <= SMALL and "hashlib" not in sys.modules:
        builtin = _builtin_sha256()
        if builtin is not None:
            return builtin(data)
    import hashlib

    return hashlib.sha256(data)


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data``."""
    hexdigest: str = sha256(data).hexdigest()
    return hexdigest


def file_hexdigest(f: BufferedReader, algorithm: str, size_hint: int) -> str:
    """``hashlib.file_digest(f, algorithm).hexdigest()``: ``f`` read from where it is
    to its end. ``size_hint``: its expected size (a descriptor's), which picks the
    implementation; the digest does not depend on it."""
    if algorithm == "sha256" and size_hint <= SMALL and "hashlib" not in sys.modules:
        digest = sha256(b"", size_hint)
        while block := f.read(SMALL):
            digest.update(block)
        hexdigest: str = digest.hexdigest()
        return hexdigest
    import hashlib

    return hashlib.file_digest(f, algorithm).hexdigest()
