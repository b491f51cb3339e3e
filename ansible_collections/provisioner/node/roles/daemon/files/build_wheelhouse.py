"""Build (or find in the cache) the wheelhouse the daemon role installs on a node.

Runs on the controller with its Python (the role delegates it to localhost, once per
play):

    build_wheelhouse.py --source CHECKOUT --cache DIR [--with-ansible] [--collection DIR]

* the pinned dependencies: ``pip download --require-hashes`` of the hashed lock
  ``CHECKOUT/requirements/runtime.txt`` (plus ansible-core and its pins from
  ``requirements/dev.txt`` with ``--with-ansible``, for pull mode), cached under
  ``DIR/deps-<hash of the lock lines>``;
* the project's own wheel, ``pip wheel --no-deps --no-build-isolation CHECKOUT``,
  cached under ``DIR/project-<hash of the package sources>``;
* one tar of both with a ``requirements.txt`` (every line hash-pinned, the project's
  wheel included) and a ``project.txt`` (just the project's wheel, hash-pinned), written
  deterministically, so the same inputs give the same bytes and the copy to the node is
  a no-op on the next run;
* with ``--collection``, a tar of that collection directory as well (pull mode).

Prints one JSON object: ``tar``, ``digest``, ``version``, ``collection_tar``, ``changed``.
Only the standard library and pip are used (the controller's Ansible Python).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE_SOURCES = ("pyproject.toml", "provisioner")
IGNORED = ("__pycache__", "*.pyc", "provisioner-shim", ".build.lock", "*.egg-info")
SKIP = re.compile(r"(__pycache__|\.pyc$|provisioner-shim|\.build\.lock|\.egg-info)")
ANSIBLE_PACKAGES = ("ansible-core", "resolvelib", "packaging")


def lock_entries(text: str) -> dict[str, str]:
    """``name -> the full requirement entry`` (continuation lines joined) of a uv lock."""
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith((" ", "\t")) and current:
            if not line.strip().startswith("#"):
                current.append(line.strip().rstrip("\\").strip())
            continue
        if current:
            name = re.split(r"[=;\s\[]", current[0], maxsplit=1)[0].lower()
            entries.setdefault(name, "")
            entries[name] += " ".join(current) + "\n"
        current = [line.rstrip("\\").strip()] if line and not line.startswith("#") else []
    return entries


def requirements(source: Path, with_ansible: bool) -> str:
    entries = lock_entries((source / "requirements" / "runtime.txt").read_text())
    text = "".join(entries.values())
    if with_ansible:
        dev = lock_entries((source / "requirements" / "dev.txt").read_text())
        text += "".join(dev[name] for name in ANSIBLE_PACKAGES if name not in entries)
    return text


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           *args], capture_output=True, text=True, check=False,
                          # the same sources make the same wheel, byte for byte
                          env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
    if done.returncode != 0:
        raise SystemExit(f"pip {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")


def source_digest(source: Path) -> str:
    digest = hashlib.sha256()
    for top in PACKAGE_SOURCES:
        path = source / top
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            rel = file.relative_to(source).as_posix()
            if SKIP.search(rel):
                continue
            digest.update(rel.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def deterministic_tar(out: Path, files: dict[str, bytes]) -> bool:
    """Write ``out`` from ``name -> bytes`` (sorted, mtime 0, root-owned); False when
    ``out`` already holds exactly that."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    data = buffer.getvalue()
    if out.exists() and out.read_bytes() == data:
        return False
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(out)
    return True


def build(source: Path, cache: Path, with_ansible: bool) -> tuple[Path, str, str, bool]:
    changed = False
    reqs = requirements(source, with_ansible)
    deps_dir = cache / f"deps-{hashlib.sha256(reqs.encode()).hexdigest()[:16]}"
    if not (deps_dir / ".complete").exists():
        deps_dir.mkdir(parents=True, exist_ok=True)
        (deps_dir / "requirements.lock").write_text(reqs)
        pip("download", "--quiet", "--require-hashes", "--no-deps", "--only-binary=:all:",
            "-d", str(deps_dir), "-r", str(deps_dir / "requirements.lock"))
        (deps_dir / ".complete").touch()
        changed = True
    project_dir = cache / f"project-{source_digest(source)}"
    wheels = sorted(project_dir.glob("provisioner-*.whl")) if project_dir.is_dir() else []
    if not wheels:
        project_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:  # the build leaves build/ behind
            copy = Path(tmp, "src")
            copy.mkdir()
            for name in (*PACKAGE_SOURCES, "README.md"):
                if (source / name).is_dir():
                    shutil.copytree(source / name, copy / name,
                                    ignore=shutil.ignore_patterns(*IGNORED))
                elif (source / name).exists():
                    shutil.copy2(source / name, copy / name)
            pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                str(project_dir), str(copy))
        wheels = sorted(project_dir.glob("provisioner-*.whl"))
        changed = True
    wheel = wheels[-1]
    version = wheel.name.split("-")[1]
    project_line = f"provisioner=={version} --hash=sha256:{sha256(wheel)}\n"
    files = {f"wheels/{p.name}": p.read_bytes() for p in deps_dir.glob("*.whl")}
    files[f"wheels/{wheel.name}"] = wheel.read_bytes()
    files["requirements.txt"] = (reqs + project_line).encode()
    files["project.txt"] = project_line.encode()
    digest = hashlib.sha256(b"".join(
        name.encode() + hashlib.sha256(files[name]).digest() for name in sorted(files)
    )).hexdigest()[:16]
    tar = cache / f"wheelhouse-{digest}.tar"
    if not tar.exists():  # named by its content's digest: an existing one is this one
        changed |= deterministic_tar(tar, files)
    return tar, digest, version, changed


def collection_tar(collection: Path, cache: Path) -> tuple[Path, bool]:
    files = {}
    for path in sorted(collection.rglob("*")):
        rel = path.relative_to(collection).as_posix()
        if path.is_file() and not SKIP.search(rel) and not rel.startswith("tests/"):
            files[f"ansible_collections/provisioner/node/{rel}"] = path.read_bytes()
    tar = cache / "collection.tar"
    return tar, deterministic_tar(tar, files)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="a provisioner checkout")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--with-ansible", action="store_true")
    parser.add_argument("--collection", type=Path)
    args = parser.parse_args()
    source = args.source.expanduser().resolve()
    if not (source / "requirements" / "runtime.txt").is_file():
        raise SystemExit(f"{source} is not a provisioner checkout "
                         "(no requirements/runtime.txt)")
    cache = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    tar, digest, version, changed = build(source, cache, args.with_ansible)
    result = {"tar": str(tar), "digest": digest, "version": version, "changed": changed,
              "collection_tar": None}
    if args.collection:
        ctar, cchanged = collection_tar(args.collection.resolve(), cache)
        result["collection_tar"], result["changed"] = str(ctar), changed or cchanged
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
