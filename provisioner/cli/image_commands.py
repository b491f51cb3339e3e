"""``images list`` and ``images prune``: the node's image cache, through its executor.

``list`` shows every unpacked image with what names it (the registry references last
pulled as it, or the local layout that still resolves to it; ``<none>``: dangling), its
unpacked size, its blobs in the shared cache and the pods using it. ``prune`` removes
the images no pod of the node uses that are dangling, or with ``--all`` every image no
pod uses, and the blobs no remaining image needs; it takes the node's writer lock like
``apply``. Both work on this machine or, with ``--target``, through a daemon
(``NodeService.ListImages`` / ``PruneImages``). docs/pods.md, "Image collection".
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from provisioner.cli.base import EXIT_OK, Parser, emit_json
from provisioner.cli.node_commands import add_node_args, executor
from provisioner.errors import UsageError

if TYPE_CHECKING:  # imported when a command runs (see provisioner.cli.main)
    from provisioner.image_state import ImageList, ImagePrune, ImageRecord

_UNITS = ("B", "kB", "MB", "GB", "TB")


def add_images(parser: Parser) -> None:
    """The ``images`` command with its subcommands ``list`` and ``prune``."""
    parser.description = ("The node's image cache: list the unpacked images, or prune "
                          "those no pod uses. On this machine, or through a daemon with "
                          "--target.")
    sub = parser.add_subparsers(dest="images_command", metavar="SUBCOMMAND",
                                parser_class=Parser)
    listing = sub.add_parser("list", help="every image with its references, size and the "
                             "pods using it")
    listing.description = ("Every unpacked image: what names it now (<none>: dangling), "
                           "its unpacked size, its blobs in the shared cache, the pods "
                           "using it. Changes nothing.")
    listing.add_argument("--json", action="store_true", help="one JSON object")
    add_node_args(listing)
    listing.set_defaults(run=run_images_list)
    prune = sub.add_parser("prune", help="remove the images no pod uses")
    prune.description = (
        "Remove the images no pod of the node uses (allocated, running or stopped) that "
        "nothing names any more (dangling: a tag that moved, a layout changed or gone), "
        "then the blobs no remaining image needs. --all removes every image no pod uses "
        "(the next allocate pulls it again). Takes the node's writer lock like apply.")
    prune.add_argument("--all", action="store_true", dest="all_unused",
                       help="also remove images still named by a reference, if no pod "
                       "uses them")
    prune.add_argument("--dry-run", action="store_true",
                       help="only say what would be removed")
    prune.add_argument("--json", action="store_true", help="one JSON object")
    add_node_args(prune)
    prune.set_defaults(run=run_images_prune)
    parser.set_defaults(run=_no_subcommand)


def _no_subcommand(args: argparse.Namespace) -> int:
    raise UsageError("images needs a subcommand: list or prune (provisioner images --help)")


def human_bytes(size: int) -> str:
    """``1.2 MB``: decimal units, one decimal place from kB up."""
    value = float(size)
    for unit in _UNITS:
        if value < 1000 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def short_digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}:{hex_[:12]}"


def image_json(image: ImageRecord) -> dict[str, Any]:
    """One image as the ``--json`` object shows it."""
    return {"digest": image.digest, "references": list(image.references),
            "pulled_as": image.pulled_as, "size": image.size,
            "blob_bytes": image.blob_bytes, "pods": list(image.pods),
            "in_use": image.in_use, "dangling": image.dangling,
            "imported_at_ns": image.imported_at_ns}


def _names(image: ImageRecord) -> str:
    if image.references:
        return ", ".join(image.references)
    return "<none>" + (f" (was {image.pulled_as})" if image.pulled_as else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def render_images(images: ImageList) -> list[str]:
    """The ``images list`` table and a summary line."""
    header = ("IMAGE", "REFERENCES", "SIZE", "BLOBS", "IN USE BY")
    rows = [header] + [(short_digest(i.digest), _names(i), human_bytes(i.size),
                        human_bytes(i.blob_bytes), ", ".join(i.pods) or "-")
                       for i in images.images]
    widths = [max(len(row[n]) for row in rows) for n in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + row[-1] for row in rows]
    used = sum(1 for i in images.images if i.in_use)
    dangling = sum(1 for i in images.images if i.dangling)
    lines.append(f"{_count(len(images.images), 'image')} ({used} in use, {dangling} dangling), "
                 f"{human_bytes(sum(i.size for i in images.images))} unpacked; blob cache "
                 f"{human_bytes(images.blob_bytes)} ({human_bytes(images.unused_blob_bytes)} "
                 "needed by no image)")
    return lines


def render_prune(result: ImagePrune) -> list[str]:
    """What ``images prune`` removed and kept, and a summary line."""
    verb = "would remove" if result.dry_run else "removed"
    width = len(verb)
    lines = [f"{verb}  {short_digest(i.digest)}  {_names(i)}  {human_bytes(i.size)}"
             for i in result.removed]
    lines += [f"{'kept':<{width}}  {short_digest(k.digest)}  {k.reason}" for k in result.kept]
    images = _count(len(result.removed), "image")
    blobs = _count(result.removed_blobs, "blob")
    if result.dry_run:
        lines.append(f"Would prune {images} and {blobs}: {human_bytes(result.bytes_freed)} "
                     "(dry run: nothing removed).")
    else:
        lines.append(f"Pruned {images} and {blobs}: {human_bytes(result.bytes_freed)} "
                     "freed.")
    return lines


def run_images_list(args: argparse.Namespace) -> int:
    """``images list``: the image cache as a table or one JSON object."""
    with executor(args, read_only=True) as ex:
        images = ex.list_images()
    if args.json:
        emit_json({"images": [image_json(i) for i in images.images],
                   "blob_bytes": images.blob_bytes,
                   "unused_blob_bytes": images.unused_blob_bytes})
    else:
        print("\n".join(render_images(images)))
    return EXIT_OK


def run_images_prune(args: argparse.Namespace) -> int:
    """``images prune``: remove what no pod uses, under the node's writer lock."""
    with executor(args) as ex:
        result = ex.prune_images(all_unused=args.all_unused, dry_run=args.dry_run)
    if args.json:
        emit_json({"removed": [image_json(i) for i in result.removed],
                   "kept": [{"digest": k.digest, "reason": k.reason} for k in result.kept],
                   "removed_blobs": result.removed_blobs,
                   "bytes_freed": result.bytes_freed, "dry_run": result.dry_run})
    else:
        print("\n".join(render_prune(result)))
    return EXIT_OK
