"""The image cache <-> ``provisioner.v1`` ListImages / PruneImages messages.

:class:`~provisioner.image_state.ImageRecord` <-> ``Image``,
:class:`~provisioner.image_state.ImageList` <-> ``ListImagesResponse``,
:class:`~provisioner.image_state.ImagePrune` <-> ``PruneImagesResponse``. Sizes are
bytes (``uint64``); a digest, reference or pod name travels as written.
"""

from __future__ import annotations

from provisioner._proto.provisioner.v1 import node_pb2 as npb
from provisioner.image_state import ImageList, ImagePrune, ImageRecord, KeptImage


def image_to_proto(image: ImageRecord) -> npb.Image:
    """One image of the cache as an ``Image`` message."""
    return npb.Image(digest=image.digest, references=list(image.references),
                     pulled_as=image.pulled_as, size=image.size,
                     blob_bytes=image.blob_bytes, pods=list(image.pods),
                     imported_at_ns=image.imported_at_ns)


def image_from_proto(message: npb.Image) -> ImageRecord:
    """An ``Image`` message as an :class:`ImageRecord`."""
    return ImageRecord(digest=message.digest, references=tuple(message.references),
                       pulled_as=message.pulled_as, size=message.size,
                       blob_bytes=message.blob_bytes, pods=tuple(message.pods),
                       imported_at_ns=message.imported_at_ns)


def image_list_to_proto(images: ImageList) -> npb.ListImagesResponse:
    """The image cache as a ListImages answer."""
    return npb.ListImagesResponse(images=[image_to_proto(i) for i in images.images],
                                  blob_bytes=images.blob_bytes,
                                  unused_blob_bytes=images.unused_blob_bytes)


def image_list_from_proto(message: npb.ListImagesResponse) -> ImageList:
    """A ListImages answer as an :class:`ImageList`."""
    return ImageList(tuple(image_from_proto(i) for i in message.images),
                     message.blob_bytes, message.unused_blob_bytes)


def prune_to_proto(result: ImagePrune) -> npb.PruneImagesResponse:
    """What a prune did as a PruneImages answer."""
    return npb.PruneImagesResponse(
        removed=[image_to_proto(i) for i in result.removed],
        kept=[npb.KeptImage(digest=k.digest, reason=k.reason) for k in result.kept],
        removed_blobs=result.removed_blobs, bytes_freed=result.bytes_freed,
        dry_run=result.dry_run)


def prune_from_proto(message: npb.PruneImagesResponse) -> ImagePrune:
    """A PruneImages answer as an :class:`ImagePrune`."""
    return ImagePrune(tuple(image_from_proto(i) for i in message.removed),
                      tuple(KeptImage(k.digest, k.reason) for k in message.kept),
                      message.removed_blobs, message.bytes_freed, message.dry_run)
