"""A node's image cache as the executors report it (``provisioner images list`` and
``prune``, NodeService ListImages / PruneImages). Pure data, no I/O; apart from
:mod:`provisioner.state` so that a command that plans and applies does not build these
classes."""

from __future__ import annotations

from provisioner.records import record


@record
class ImageRecord:
    """An image of the node's image cache (``provisioner images list``): unpacked under
    its manifest digest, with what still names it and which pods use it."""

    digest: str  # "sha256:<hex>" of the image manifest
    #: What names it now: the registry references whose last pull gave this digest, or
    #: the local layout that still resolves to it. Empty: dangling.
    references: tuple[str, ...] = ()
    #: The reference it was first pulled (or unpacked) as ("" when unknown).
    pulled_as: str = ""
    size: int = 0  # apparent size of the unpacked root filesystem, bytes
    #: Bytes of its blobs (manifest, config, layers) in the shared blob cache; a blob
    #: two images share counts for both.
    blob_bytes: int = 0
    #: The pods recorded on the node whose containers use it (in use: never removed).
    pods: tuple[str, ...] = ()
    imported_at_ns: int = 0

    @property
    def in_use(self) -> bool:
        """Whether a pod the node has (allocated, running or stopped) uses it."""
        return bool(self.pods)

    @property
    def dangling(self) -> bool:
        """Whether nothing names it any more (a moved tag, a changed or gone layout)."""
        return not self.references


@record
class ImageList:
    """The node's image cache: its images and the blob cache's size."""

    images: tuple[ImageRecord, ...] = ()
    blob_bytes: int = 0  # every blob in the shared blob cache, bytes
    #: Blobs no image needs (left by removed images or by failed pulls), bytes.
    unused_blob_bytes: int = 0


@record
class KeptImage:
    """An image a prune left, and why (in use, or still named with prune's default)."""

    digest: str
    reason: str


@record
class ImagePrune:
    """What ``provisioner images prune`` removed (or, with ``dry_run``, would remove)."""

    removed: tuple[ImageRecord, ...] = ()
    kept: tuple[KeptImage, ...] = ()
    removed_blobs: int = 0
    #: Bytes freed: the removed images' directories and the removed blobs.
    bytes_freed: int = 0
    dry_run: bool = False
