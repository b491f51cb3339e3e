"""The syntax of a container's ``image``: what ``validate`` accepts, before any node.

Two forms:

* a local OCI image layout, ``oci:/absolute/path[:tag]`` (or the absolute path alone):
  the only form a node can use today (:mod:`provisioner.node.oci.layout` resolves it);
* a registry reference, ``[HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST]``, in the grammar of
  the OCI distribution reference (lowercase path components separated by ``/``, a
  first component with a ``.`` or ``:``, or ``localhost``, is the registry host),
  pulled with skopeo (:mod:`provisioner.node.oci.pull`). Docker Hub's defaults apply
  when no host is given (``docker.io``, ``library/`` for one-part names, tag
  ``latest`` without tag or digest); a container's ``registry`` field supplies the
  host when the image names none (:func:`canonical_reference`).

A malformed reference is refused at ``validate`` with its line; whether a layout exists
and has the tag is the node's to say, at ``plan``.
"""

from __future__ import annotations

import re

from provisioner.errors import InvalidArgument
from provisioner.lazyre import lazy_pattern
from provisioner.records import record

_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_TAG_RE = lazy_pattern(_TAG)
_HOST_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9A-Fa-f:]+\])(?::[0-9]{{1,5}})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_COMPONENT_RE = lazy_pattern(_COMPONENT)
_REGISTRY_RE = lazy_pattern(
    rf"(?:(?P<host>{_HOST})/)?(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>sha256:[0-9a-f]{{64}}))?")
#: The most a repository name may have (distribution's reference grammar).
MAX_NAME_CHARS = 255

FORMS = "oci:/path/of/a/layout[:tag], or [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST]"


#: Docker Hub, the host of a reference that names none (and no ``registry`` is given).
DEFAULT_REGISTRY = "docker.io"
_REGISTRY_HOST_RE = lazy_pattern(_HOST)


@record
class ImageReference:
    """A syntactically valid reference: a layout (``layout`` set) or a registry one."""

    text: str
    layout: str = ""  # the absolute path of a local OCI layout (tag not split off)
    host: str = ""
    name: str = ""
    tag: str = ""
    digest: str = ""

    @property
    def is_layout(self) -> bool:
        """Whether the reference names a local OCI layout (``oci:PATH[:TAG]``)."""
        return bool(self.layout)

    def canonical(self, registry: str = "") -> str:
        """The fully qualified registry reference, ``HOST/NAME:TAG`` or
        ``HOST/NAME@DIGEST`` (a digest wins over a tag: it names the content)."""
        host = self.host or registry or DEFAULT_REGISTRY
        name = self.name
        if host == DEFAULT_REGISTRY and "/" not in name:
            name = f"library/{name}"
        if self.digest:
            return f"{host}/{name}@{self.digest}"
        return f"{host}/{name}:{self.tag or 'latest'}"


def parse_image_reference(text: str) -> ImageReference:
    """``text`` checked and split; InvalidArgument saying what is wrong otherwise."""
    if not text:
        raise InvalidArgument(f"empty image reference (expected {FORMS})")
    if any(ord(c) < 32 or c == "\x7f" for c in text):
        raise InvalidArgument(f"{text!r} holds a control character (NUL, newline, ...)")
    if text.startswith("oci:") or text.startswith("/"):
        return _layout(text)
    match = _REGISTRY_RE.fullmatch(text)
    if not match:
        raise InvalidArgument(f"{text!r} is not an image reference ({_why(text)}; expected "
                              f"{FORMS})")
    host, name = match.group("host") or "", match.group("name")
    if host and not ("." in host or ":" in host or host == "localhost" or host[0] == "["):
        # Not a registry host (no '.', no port, not localhost): the name's first part,
        # as in library/busybox.
        if not _COMPONENT_RE.fullmatch(host):
            raise InvalidArgument(f"{text!r} is not an image reference (repository names "
                                  f"are lowercase; expected {FORMS})")
        host, name = "", f"{host}/{name}"
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"{text!r}: the repository name is {len(name)} characters "
                              f"long; at most {MAX_NAME_CHARS}")
    if host and ":" in host and not host.startswith("["):
        port = int(host.rpartition(":")[2])
        if not 1 <= port <= 65535:
            raise InvalidArgument(f"{text!r}: port {port} is not in 1-65535")
    return ImageReference(text, host=host, name=name, tag=match.group("tag") or "",
                          digest=match.group("digest") or "")


def parse_registry(text: str) -> str:
    """A container's ``registry`` field checked: ``HOST[:PORT]`` (no scheme, no path)."""
    if not _REGISTRY_HOST_RE.fullmatch(text):
        raise InvalidArgument(f"registry {text!r} is not a registry host (HOST or HOST:PORT, "
                              "such as registry.example.com or localhost:5000; no scheme, "
                              "no path)")
    if ":" in text and not text.startswith("["):
        port = int(text.rpartition(":")[2])
        if not 1 <= port <= 65535:
            raise InvalidArgument(f"registry {text!r}: port {port} is not in 1-65535")
    return text


def canonical_reference(image: str, registry: str = "") -> str:
    """The fully qualified reference of ``image`` (the ``registry`` field supplying its
    host when it names none); InvalidArgument for a local layout or bad syntax."""
    reference = parse_image_reference(image)
    if reference.is_layout:
        raise InvalidArgument(f"image {image!r} is a local OCI layout, not a registry "
                              "reference")
    if registry:
        parse_registry(registry)
    return reference.canonical(registry)


def _layout(text: str) -> ImageReference:
    body = text.removeprefix("oci:")
    if not body.startswith("/"):
        raise InvalidArgument(f"{text!r}: the path of an OCI layout must be absolute "
                              "(oci:/path/of/the/layout[:tag])")
    last = body.rsplit("/", 1)[-1]
    if ":" in last:
        tag = last.rpartition(":")[2]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"{text!r}: {tag!r} is not a tag (1-128 of A-Z a-z 0-9 _ . "
                                  "-, not starting with . or -)")
    return ImageReference(text, layout=body)


def _why(text: str) -> str:
    """The likeliest reason a registry-style reference does not parse."""
    if text != text.lower() and "@" not in text and ":" not in text:
        return "repository names are lowercase"
    if "@" in text and not re.search(r"@sha256:[0-9a-f]{64}$", text):
        return "a digest is @sha256: and 64 lowercase hex digits"
    if text.startswith(("./", "../", "~")) or text.startswith("."):
        return "a layout path must be absolute"
    if " " in text:
        return "it holds a space"
    return "bad syntax"
