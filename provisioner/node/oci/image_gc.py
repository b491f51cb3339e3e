"""Image garbage collection: what the image store holds, and removing what no pod uses.

The image store (:mod:`provisioner.node.oci.images`) keeps, under
``<state_dir>/images/``, one directory per unpacked image (``<manifest hex>/``), the
registry pulls' shared blobs (``blobs/sha256/``) and what each registry reference was
last pulled as (``refs/``). Nothing there is ever removed by a pull; this module is
what removes it.

:func:`list_images` describes every unpacked image
(:class:`~provisioner.image_state.ImageRecord`):

- **references**: what names it *now* - the registry references whose ``refs/`` record
  gives its digest, or, for an image unpacked from a local OCI layout, that layout when
  it still resolves to this digest. An image nothing names is **dangling**: a tag that
  moved (a later pull with ``Always`` got another digest), a layout re-tagged, changed
  or gone.
- **size**: the unpacked root filesystem's apparent size; **blob_bytes**: its blobs
  (manifest, config, layers) in the shared cache, a shared layer counted for each
  image that has it.
- **pods**: the pods that use it, as the caller says (``in_use``: the runtime knows
  the pods; this room does not read the store).

:func:`prune_images` removes every image that no pod uses and that is dangling - or,
with ``all_unused``, every image that no pod uses - with the ``refs/`` records naming
it, then every blob of the shared cache that no remaining image needs. An image in use
is never removed, nor a blob a remaining image lists. When a remaining image's
manifest is unknown (unpacked by a version without image metadata) or a pull is in
progress (a ``.pull-*`` directory whose lock is held), no blob is removed: which ones
are needed is not known then. The caller holds the node's writer lock, so no pull of
this node runs meanwhile and the pods it passed stay as they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from provisioner.errors import InvalidArgument, ProvisionerError
from provisioner.image_state import ImageList, ImagePrune, ImageRecord, KeptImage
from provisioner.node.oci.image_info import ImageInfo, tree_size
from provisioner.node.oci.images import ImageStore
from provisioner.node.oci.layout import parse_reference, resolve
from provisioner.node.oci.registry_images import BLOBS, PULL_PREFIX, REFS
from provisioner.records import record

__all__ = ["list_images", "prune_images"]

_HEX = re.compile(r"^[0-9a-f]{64}$")


@record
class _Entry:
    record: ImageRecord
    #: Digests of the blobs it needs (None: unknown, its manifest was not kept).
    blobs: frozenset[str] | None


def list_images(store: ImageStore, in_use: Mapping[str, Sequence[str]]) -> ImageList:
    """Every image unpacked in ``store``, oldest first, with the blob cache's size;
    ``in_use`` maps an image digest to the pods using it."""
    blobs = _blob_sizes(store)
    entries = _entries(store, in_use, blobs, _ref_records(store))
    needed = _needed(entries, blobs)
    return ImageList(tuple(e.record for e in entries), sum(blobs.values()),
                     sum(size for digest, size in blobs.items() if digest not in needed))


def prune_images(store: ImageStore, in_use: Mapping[str, Sequence[str]],
                 all_unused: bool = False, dry_run: bool = False) -> ImagePrune:
    """Remove the images no pod uses that are dangling (every one no pod uses with
    ``all_unused``), their ``refs/`` records and the blobs no remaining image needs;
    with ``dry_run`` only say what would go. The caller holds the writer lock."""
    # Read once: removing images changes neither the blobs (the caller's writer lock
    # keeps this node's pulls out) nor the records of the references that remain.
    blobs = _blob_sizes(store)
    ref_records = _ref_records(store)
    entries = _entries(store, in_use, blobs, ref_records)
    doomed: list[_Entry] = []
    kept: list[KeptImage] = []
    for entry in entries:
        record = entry.record
        if record.pods:
            kept.append(KeptImage(record.digest, "in use by " + ", ".join(
                f"Pod/{pod}" for pod in record.pods)))
        elif record.references and not all_unused:
            kept.append(KeptImage(record.digest, "the current image of "
                                  + ", ".join(record.references) + " (--all removes it)"))
        else:
            doomed.append(entry)
    removed: list[ImageRecord] = []
    freed = 0
    for entry in doomed:
        hex_ = entry.record.digest.partition(":")[2]
        path = os.path.join(store.dir, hex_)
        size = tree_size(path)
        if not dry_run:
            _forget_references(ref_records, entry.record.digest)
            if not store.remove(entry.record.digest):
                continue  # gone meanwhile
        removed.append(entry.record)
        freed += size
    remaining = [e for e in entries if e not in doomed]
    needed = _needed(remaining, blobs)
    unneeded = [digest for digest in blobs if digest not in needed]
    if unneeded and _pull_in_progress(store):
        unneeded = []
    removed_blobs = 0
    for digest in unneeded:
        if not dry_run:
            try:
                os.unlink(_blob_file(store, digest))
            except FileNotFoundError:
                continue
        removed_blobs += 1
        freed += blobs[digest]
    return ImagePrune(tuple(removed), tuple(kept), removed_blobs, freed, dry_run)


# -- reading the store ------------------------------------------------------------------
def _entries(store: ImageStore, in_use: Mapping[str, Sequence[str]],
             blob_sizes: Mapping[str, int],
             ref_records: Sequence[tuple[str, dict[str, str]]]) -> list[_Entry]:
    pulled = _pulled_references(ref_records)
    entries = []
    for digest in store.digests():
        info = store.info(digest)
        if info is None:
            continue  # removed meanwhile
        references = sorted(pulled.get(digest, ()))
        if _is_layout(info.reference) and _layout_names(info.reference, digest):
            references.append(info.reference)
        blobs = _blobs_of(info)
        record = ImageRecord(
            digest=digest, references=tuple(references), pulled_as=info.reference,
            size=info.size,
            blob_bytes=sum(blob_sizes.get(b, 0) for b in blobs or ()),
            pods=tuple(sorted(set(in_use.get(digest, ())))),
            imported_at_ns=info.imported_at_ns)
        entries.append(_Entry(record, blobs))
    entries.sort(key=lambda e: (e.record.imported_at_ns, e.record.digest))
    return entries


def _pulled_references(references: Iterable[tuple[str, dict[str, str]]]
                       ) -> dict[str, list[str]]:
    """Image digest -> the registry references last pulled as it (``refs/``)."""
    found: dict[str, list[str]] = {}
    for _path, ref in references:
        found.setdefault(ref["digest"], []).append(ref["reference"])
    return found


def _ref_records(store: ImageStore) -> list[tuple[str, dict[str, str]]]:
    """Every readable ``refs/`` record: its path, the reference and the digest."""
    folder = os.path.join(store.dir, REFS)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    records = []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("reference"), str) and \
                isinstance(data.get("digest"), str):
            records.append((path, {"reference": data["reference"], "digest": data["digest"]}))
    return records


def _forget_references(references: Iterable[tuple[str, dict[str, str]]],
                       digest: str) -> None:
    """Remove the ``refs/`` records that name ``digest`` (before the image goes, so no
    record ever names a missing image that a pull would trust)."""
    for path, ref in references:
        if ref["digest"] == digest:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _is_layout(reference: str) -> bool:
    return reference.startswith(("oci:", "/"))


def _layout_names(reference: str, digest: str) -> bool:
    """Whether the local layout ``reference`` still resolves to ``digest``."""
    try:
        layout, tag = parse_reference(reference)
        return resolve(layout, tag).sha256 == digest
    except (ProvisionerError, OSError, ValueError):
        return False


def _blobs_of(info: ImageInfo) -> frozenset[str] | None:
    """The blobs an image needs: its manifest, config and layers (None: unknown)."""
    if not info.manifest:
        return None
    try:
        manifest = json.loads(info.manifest)
        config = manifest["config"]["digest"]
        layers = [layer["digest"] for layer in manifest.get("layers") or ()]
    except (ValueError, KeyError, TypeError):
        return None
    return frozenset([info.digest, str(config), *(str(layer) for layer in layers)])


def _blob_sizes(store: ImageStore) -> dict[str, int]:
    """Digest -> size of every blob in the shared cache."""
    folder = os.path.join(store.dir, BLOBS, "sha256")
    sizes = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if _HEX.match(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        sizes[f"sha256:{entry.name}"] = entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        pass
    return sizes


def _needed(entries: Sequence[_Entry], blobs: Mapping[str, int]) -> set[str]:
    """The blobs the images of ``entries`` need; all of them when one's are unknown."""
    needed: set[str] = set()
    for entry in entries:
        if entry.blobs is None:
            return set(blobs)
        needed |= entry.blobs
    return needed


def _blob_file(store: ImageStore, digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    if algorithm != "sha256" or not _HEX.match(hex_):
        raise InvalidArgument(f"blob digest {digest!r}: expected sha256:<64 hex digits>")
    return os.path.join(store.dir, BLOBS, "sha256", hex_)


def _pull_in_progress(store: ImageStore) -> bool:
    """Whether a pull is under way (its ``.pull-*`` directory is locked)."""
    try:
        names = os.listdir(store.dir)
    except FileNotFoundError:
        return False
    for name in names:
        if not name.startswith(PULL_PREFIX):
            continue
        try:
            fd = os.open(os.path.join(store.dir, name),
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a lock taken here
    return False
