"""The namespace holder of an isolated cell.

Run as ``python -m provisioner.node.process.holder NAME [--net]``.

It keeps the cell's namespaces alive; executables join them with ``nsenter --target``.
Started by :func:`provisioner.node.process.namespaces.start_holder` in two steps:

1. *launch* (``--launch``): a plain process that first writes itself into the cell's
   ``_holder`` leaf cgroup(s), so that nothing it starts can be outside the cell, then
   forks (the caller reaps the parent at once; no zombie is left behind, even in a
   long-running daemon), and the child, in a session of its own, execs::

       unshare --pid --fork --mount --ipc --uts --cgroup --propagation=private [--net] --
           python -m provisioner.node.process.holder NAME [--net] --ready-file FILE

   ``unshare`` stays as the parent of the holder (it blocks SIGTERM and exits when the
   holder does); the holder is pid 1 of the new pid namespace.

2. *hold* (the default): the holder looks at which namespaces it really is in - it
   compares ``/proc/self/ns/*`` with those the launcher came from (``--outer-ns``), so
   it can never rename the host or touch the host's loopback by mistake. Then it mounts
   a fresh ``/proc`` (when pid 1 of new pid and mount namespaces), sets the hostname and
   the NIS domainname to NAME (new uts namespace; upstream Aurae sets both to the cell's
   name), brings ``lo`` up (``--net``, which requires a new network
   namespace) and writes ``{"pid": <its pid as the host sees it>}`` to the ready file.
   From then on it reaps every child until SIGTERM or SIGINT, and exits 0 - which makes
   the kernel kill whatever is left in the pid namespace.

Orphans of processes *inside* the cell come to the holder (pid 1). But the direct child
of an ``nsenter`` belongs to the host's side: should nsenter die first, that child is
reparented to the host's reaper (or the nearest subreaper), not to the holder.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from typing import NoReturn

from provisioner.errors import UnsafeName
from provisioner.names import check_dns_label

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
#: Namespaces the holder acts in only once it knows they are new (see _new_namespace).
_CHECKED_NS = ("mnt", "uts", "net")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m provisioner.node.process.holder")
    parser.add_argument("name", help="hostname for the cell (one DNS label)")
    parser.add_argument("--net", action="store_true", help="bring loopback up in a new netns")
    parser.add_argument("--ready-file", help="where to write {'pid': N} once ready")
    parser.add_argument("--launch", action="store_true",
                        help="join --cgroup-procs, then start the holder under unshare")
    parser.add_argument("--isolate-process", action="store_true",
                        help="with --launch: new pid, mount, ipc and uts namespaces")
    parser.add_argument("--cgroup-procs", action="append", default=[],
                        help="with --launch: a cgroup.procs file to join first (repeatable)")
    parser.add_argument("--outer-ns", action="append", default=[],
                        help="a namespace the holder must NOT be in, as /proc/PID/ns shows "
                             "it (e.g. 'net:[4026531833]'); the launcher passes its own")
    return parser.parse_args(argv)


def _fail(message: str) -> NoReturn:
    print(f"holder: {message}", file=sys.stderr, flush=True)
    os._exit(1)


# --- launch ------------------------------------------------------------------------

def _launch(args: argparse.Namespace) -> NoReturn:
    for procs in args.cgroup_procs:
        try:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0" is the writer itself
            finally:
                os.close(fd)
        except OSError as exc:
            _fail(f"cannot join cgroup {os.path.dirname(procs)}: {exc.strerror}")
    unshare = shutil.which("unshare") or _fail("unshare(1) not found (util-linux)")
    # --cgroup: the holder's own view (rooted at its leaf); each executable unshares one
    # rooted at its own leaf (the shim's unshare_cgroup), upstream cells always have one.
    flags = ["--pid", "--fork", "--mount", "--ipc", "--uts", "--cgroup",
             "--propagation=private"] if args.isolate_process else []
    if args.net:
        flags.append("--net")
    inner = [sys.executable, "-m", "provisioner.node.process.holder", args.name,
             *(f"--outer-ns={os.readlink(f'/proc/self/ns/{k}')}" for k in _CHECKED_NS)]
    if args.net:
        inner.append("--net")
    if args.ready_file:
        inner += ["--ready-file", args.ready_file]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        os._exit(0)
    os.setsid()  # no controlling terminal, no SIGHUP when the starter exits
    try:
        os.execv(unshare, [unshare, *flags, "--", *inner])
    except OSError as exc:
        _fail(f"cannot execute {unshare}: {exc.strerror}")


# --- hold --------------------------------------------------------------------------

def _new_namespace(kind: str, outer: list[str]) -> bool:
    """True if this process is in another ``kind`` namespace than the one it came from.

    The launcher names its own namespaces (``--outer-ns``): once in a new pid namespace,
    those of the host's init can no longer be read (ptrace access is denied), so asking
    /proc/1 is only the fallback for a holder started by hand; unreadable means "no".
    """
    try:
        mine = os.readlink(f"/proc/self/ns/{kind}")
        known = [ns for ns in outer if ns.startswith(f"{kind}:")]
        return mine not in known if known else mine != os.readlink(f"/proc/1/ns/{kind}")
    except OSError:
        return False


def _set_domainname(name: str) -> None:
    """setdomainname(2), which Python's socket module does not offer."""
    libc = ctypes.CDLL(None, use_errno=True)
    raw = name.encode("ascii")
    if libc.setdomainname(ctypes.c_char_p(raw), ctypes.c_size_t(len(raw))) != 0:
        _fail(f"setdomainname({name!r}): {os.strerror(ctypes.get_errno())}")


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _fail(f"{' '.join(argv)} failed: {result.stderr.strip() or result.returncode}")


def _hold(args: argparse.Namespace) -> int:
    # A real handler (not SIG_DFL) is needed: the kernel drops default-action signals
    # sent to the init of a pid namespace. A stop that arrives during setup is noted
    # here; later ones stay pending while blocked and are taken with sigwaitinfo, so a
    # SIGTERM arriving between two waits is never lost.
    stop_requested: list[int] = []
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda s, _f: stop_requested.append(s))
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)

    # Before /proc is replaced it still belongs to the host's pid namespace, so
    # /proc/self names this process by its host pid - the pid nsenter needs.
    host_pid = int(os.readlink("/proc/self"))
    pid_ns = os.getpid() == 1
    mount_ns, uts_ns, net_ns = (_new_namespace(k, args.outer_ns) for k in _CHECKED_NS)
    if pid_ns and mount_ns:
        # The host's /proc would show host processes and make "ps" lie about pid 1.
        _run(["mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", "/proc"])
    if uts_ns:
        socket.sethostname(args.name)
        _set_domainname(args.name)
    if args.net:
        if not net_ns:
            _fail("--net given but not in a new network namespace; refusing to touch lo")
        _run(["ip", "link", "set", "dev", "lo", "up"])

    signal.pthread_sigmask(signal.SIG_BLOCK, {*_STOP_SIGNALS, signal.SIGCHLD})
    if stop_requested:
        return 0
    if args.ready_file:
        tmp = f"{args.ready_file}.tmp"
        with open(tmp, "w", encoding="ascii") as fh:
            json.dump({"pid": host_pid}, fh)
        os.replace(tmp, args.ready_file)
    while True:
        _reap()
        info = signal.sigwaitinfo({*_STOP_SIGNALS, signal.SIGCHLD})
        if info.si_signo in _STOP_SIGNALS:
            _reap()
            return 0


def _reap() -> None:
    """Collect every child that has exited (SIGCHLDs coalesce, so loop)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str] | None = None) -> int:
    """Entry point of the namespace holder process (``python -m``); its exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        check_dns_label(args.name, what="holder hostname")
    except UnsafeName as exc:
        _fail(str(exc))
    if args.launch:
        _launch(args)
    with contextlib.suppress(KeyboardInterrupt):
        return _hold(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
