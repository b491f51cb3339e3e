"""Name rules shared by manifests, the node layer and the daemon.

A name that becomes a path is checked here, once, so that it cannot leave the root
it is joined to. The regular expressions are also exported into the JSON Schemas
(see ``provisioner/manifest/overlay.py``) so editors and the CLI agree.
"""

from __future__ import annotations

from provisioner.errors import UnsafeName
from provisioner.lazyre import lazy_pattern

#: One DNS label (RFC 1123): 1-63 of [a-zA-Z0-9-], no leading or trailing '-'.
DNS_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
DNS_LABEL_RE = lazy_pattern(rf"^{DNS_LABEL}$")
#: A cell path: DNS labels joined by '/', e.g. ``web`` or ``web/cache``.
CELL_PATH = rf"{DNS_LABEL}(?:/{DNS_LABEL})*"
CELL_PATH_RE = lazy_pattern(rf"^{CELL_PATH}$")
#: Names of drivers and driver versions (file names in the registry store).
ARTIFACT_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,126}[A-Za-z0-9])?"
ARTIFACT_NAME_RE = lazy_pattern(rf"^{ARTIFACT_NAME}$")
#: Cells may nest this deep; deeper trees are refused (cgroupfs paths stay short).
MAX_CELL_DEPTH = 8


def check_dns_label(name: str, what: str = "name") -> str:
    """Return ``name`` if it is one DNS label, else raise :class:`UnsafeName`."""
    if not isinstance(name, str) or not DNS_LABEL_RE.fullmatch(name):
        raise UnsafeName(
            f"{what} {name!r} is not a DNS label "
            "(1-63 of a-z, A-Z, 0-9 and '-', not starting or ending with '-')"
        )
    return name


def container_process_name(pod: str, container: str) -> str:
    """The supervised process of a pod's container: ``<pod>.<container>``. A DNS label
    has no dot, so it can never be an executable's name."""
    return f"{check_dns_label(pod, 'pod name')}.{check_dns_label(container, 'container name')}"


#: A supervised process: an executable (a DNS label) or a pod's container.
PROCESS_NAME_RE = lazy_pattern(rf"^{DNS_LABEL}(?:\.{DNS_LABEL})?$")


def check_process_name(name: str) -> str:
    """A supervised process: an executable (a DNS label) or a container ``pod.container``.

    The error names what is wrong with the whole name (a path, a NUL byte, too many
    dots...), not with whichever part a split would give."""
    if isinstance(name, str) and PROCESS_NAME_RE.fullmatch(name):
        return name
    raise UnsafeName(f"{name!r} is not a DNS label (an executable's name: 1-63 of a-z, A-Z, "
                     "0-9 and '-', not starting or ending with '-') nor <pod>.<container> (a "
                     f"pod's container){_why_not(name)}")


def _why_not(name: object) -> str:
    if not isinstance(name, str):
        return f": it is a {type(name).__name__}, not a string"
    if name == "":
        return ": it is empty"
    if "\0" in name:
        return ": it contains a NUL byte"
    if "/" in name:
        return ": it contains '/' (names never become paths outside their folder)"
    if name.count(".") > 1 or name.startswith(".") or name.endswith("."):
        return ": a container name has exactly one '.', between two DNS labels"
    if any(len(part) > 63 for part in name.split(".")):
        return ": a DNS label is at most 63 characters"
    return ""


def process_kind(name: str) -> str:
    """``container`` for a pod's container (``pod.container``), else ``executable``."""
    return "container" if "." in name else "executable"


def check_cell_path(name: str) -> str:
    """Return ``name`` if it is a valid cell path (``a`` or ``a/b``), else raise."""
    if not isinstance(name, str) or name == "":
        raise UnsafeName("cell name is empty")
    parts = name.split("/")
    if len(parts) > MAX_CELL_DEPTH:
        raise UnsafeName(f"cell name {name!r} nests deeper than {MAX_CELL_DEPTH} levels")
    for part in parts:
        if part == "":
            raise UnsafeName(f"cell name {name!r} has an empty part")
        if part in (".", ".."):
            raise UnsafeName(f"cell name {name!r} has a {part!r} part")
        check_dns_label(part, what=f"cell name part of {name!r}:")
    return name


def check_artifact_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is safe as one file-name component, else raise."""
    if not isinstance(name, str) or not ARTIFACT_NAME_RE.fullmatch(name) or ".." in name:
        raise UnsafeName(
            f"{what} {name!r} is not allowed (1-128 of A-Z a-z 0-9 . _ + -, starting and "
            "ending with a letter or digit, no '..')"
        )
    return name


def cell_parent(name: str) -> str | None:
    """``a/b/c`` -> ``a/b``; a top-level cell has no parent."""
    head, sep, _ = name.rpartition("/")
    return head if sep else None
