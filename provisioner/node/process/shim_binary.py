"""Where the compiled supervisor ``provisioner-shim`` is, building it when needed.

The shim's C sources live in ``csrc/`` next to this module and the binary is built
next to them (``csrc/provisioner-shim``): by ``./dev setup``, by
``python -m provisioner.node.process.shim_binary``, or on first use when it is missing or older
than its sources (a C compiler is then required: ``apt-get install gcc``). The build
writes a temporary file and renames it into place, under a lock, so concurrent first
uses build once and running shims keep their (unlinked) old binary.
``PROVISIONER_SHIM`` names another binary instead (a packaged build, say).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys

from provisioner.errors import NodeError, Unavailable

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
BINARY = os.path.join(SOURCE_DIR, "provisioner-shim")
ENV_OVERRIDE = "PROVISIONER_SHIM"
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror")

_found: str | None = None


def sources() -> list[str]:
    """The shim's C sources and headers, sorted (the build's inputs)."""
    return sorted(os.path.join(SOURCE_DIR, n) for n in os.listdir(SOURCE_DIR)
                  if n.endswith((".c", ".h")))


def _stale(binary: str) -> bool:
    try:
        built = os.stat(binary).st_mtime_ns
    except FileNotFoundError:
        return True
    return any(os.stat(src).st_mtime_ns > built for src in sources())


def build(output: str = BINARY) -> str:
    """Compile the shim into OUTPUT (atomically); the path. Unavailable without a C
    compiler, NodeError with the compiler's message if the build fails."""
    import shutil  # (only to build the shim)
    import subprocess  # (~1.5 ms; a build is rare: shim_binary() finds the binary built)

    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise Unavailable("the supervisor provisioner-shim must be built and no C compiler "
                          "was found: install one (apt-get install gcc) and run "
                          "`python -m provisioner.node.process.shim_binary`")
    tmp = f"{output}.build.{os.getpid()}"
    c_files = [s for s in sources() if s.endswith(".c")]
    # Static: no dynamic loader on the path of every launch (~0.3 ms per exec here).
    done = subprocess.run([compiler, *CFLAGS, "-static", "-o", tmp, *c_files, "-lm"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 and "-lc" in done.stderr:  # no static libc: link dynamically
        done = subprocess.run([compiler, *CFLAGS, "-o", tmp, *c_files, "-lm"],
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise NodeError(f"building provisioner-shim failed:\n{done.stderr.strip()}")
    os.replace(tmp, output)
    return output


def shim_binary() -> str:
    """The path of the shim binary, built first if it is missing or stale."""
    global _found
    if _found is not None:
        return _found
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        if not os.access(override, os.X_OK):
            raise Unavailable(f"{ENV_OVERRIDE}={override} is not an executable file")
        _found = override
        return override
    if _stale(BINARY):
        with open(os.path.join(SOURCE_DIR, ".build.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _stale(BINARY):  # another process may have built it meanwhile
                build()
    _found = BINARY
    return BINARY


def main() -> int:
    """Build the shim if it is stale and print its path; 1 with the reason if it cannot."""
    try:
        print(build())
    except (NodeError, Unavailable) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
