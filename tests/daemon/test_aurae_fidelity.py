"""What the Aurae APIs report is true on the node (issue 16, points 7 and 8), driven by
clients generated from the upstream proto layout (``upstream_client.py``) through a
real channel, and checked against the kernel: namespace inodes in /proc/<pid>/ns, the
names uname(2) gives inside a cell, the log files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.node.process.logs import LogReader
from tests.daemon.aurae_harness import Daemon, running_daemon, wait_for
from tests.daemon.upstream_client import generate, run_client

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("upstream"))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path) as d:
        yield d


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


# The command prints, inside the cell: its cgroup lines as it sees them, then the names
# of uname(2) (domainname(1) reads them with getdomainname, i.e. uname), then waits.
_SHOW = ("cat /proc/self/cgroup; echo host=$(uname -n); echo domain=$(domainname); "
         "echo done; exec sleep 60")

_START_AND_READ = """
if "/" in CELL:
    cells.Allocate(rt.CellServiceAllocateRequest(cell=rt.Cell(name=CELL.rsplit("/", 1)[0])))
cells.Allocate(rt.CellServiceAllocateRequest(cell=rt.Cell(name=CELL, isolate_process=ISO)))
pid = cells.Start(rt.CellServiceStartRequest(
    cell_name=CELL, executable=rt.Executable(name="show", command=COMMAND))).pid
lines = []
stream = observe.GetSubProcessStream(ob.GetSubProcessStreamRequest(
    channel_type=ob.LOG_CHANNEL_TYPE_STDOUT, process_id=pid), timeout=20)
for item in stream:
    lines.extend(item.line.split("\\n"))
    if "done" in lines:
        stream.cancel()
        break
out({"pid": pid, "lines": lines})
"""


def _start_and_read(stubs: Path, daemon: Daemon, cell: str, isolate: bool) -> dict[str, object]:
    snippet = (_START_AND_READ.replace("CELL", repr(cell)).replace("ISO", repr(isolate))
               .replace("COMMAND", repr(_SHOW)))
    result: dict[str, object] = run_client(stubs, daemon.socket, snippet)
    return result


def test_isolated_cell_has_a_cgroup_namespace_and_its_domainname(
        stubs: Path, daemon: Daemon) -> None:
    result = _start_and_read(stubs, daemon, "web/cache", True)
    pid = int(str(result["pid"]))
    lines = [str(x) for x in result["lines"]]  # type: ignore[attr-defined]
    cgroup_lines = [ln for ln in lines if ln.count(":") >= 2]
    assert cgroup_lines, lines
    # Inside, every hierarchy shows the process at the root of its namespace.
    assert all(ln.split(":", 2)[2] == "/" for ln in cgroup_lines), cgroup_lines
    assert "host=cache" in lines and "domain=cache" in lines, lines

    # On the node: the started process and the shell it runs are in a cgroup namespace
    # that is not the host's, and the host still sees them in the cell's leaf.
    host_ns = _ns("self", "cgroup")
    shells = _children(pid)  # nsenter forks the command into the cell's pid namespace
    assert shells, f"nsenter {pid} has no child"
    for p in (pid, *shells):
        assert _ns(p, "cgroup") != host_ns
    assert _ns(shells[0], "uts") != _ns("self", "uts")
    root = daemon.layer.config.cgroup_root
    assert f"/{root}/web/cache/_x.show" in Path(f"/proc/{shells[0]}/cgroup").read_text()
    assert os.uname().nodename != "cache"  # the host's names are untouched


def test_cell_without_isolation_keeps_the_hosts_cgroup_namespace(
        stubs: Path, daemon: Daemon) -> None:
    result = _start_and_read(stubs, daemon, "plain", False)
    pid = int(str(result["pid"]))
    lines = [str(x) for x in result["lines"]]  # type: ignore[attr-defined]
    assert _ns(pid, "cgroup") == _ns("self", "cgroup")
    root = daemon.layer.config.cgroup_root
    assert any(ln.endswith(f"/{root}/plain/_x.show") for ln in lines), lines
    assert f"host={os.uname().nodename}" in lines
    wait_for(lambda: daemon.layer.is_running("show"))


_TWO_LIVES = """
import re, threading
def enable(command):
    reply = schedule.Enable(legacy_rt.Executable(meta=meta.AuraeMeta(name="talker"),
                                                 command=command))
    return int(re.search(r"pid (\\d+)", reply.meta.message).group(1))

def read_until(pid, word, into):
    stream = observe.GetSubProcessStream(ob.GetSubProcessStreamRequest(
        channel_type=ob.LOG_CHANNEL_TYPE_UNSPECIFIED, process_id=pid), timeout=20)
    for item in stream:
        into.extend(item.line.split("\\n"))
        if word in into:
            return stream

first_pid = enable("echo first life; exec sleep 60")
old_lines = []
old_stream = read_until(first_pid, "first life", old_lines)  # kept open across the destroy
rest = []
def drain():
    try:
        for item in old_stream:
            rest.append(item.line)
    except grpc.RpcError as exc:
        rest.append("rpc error " + exc.code().name)
drainer = threading.Thread(target=drain)
drainer.start()
schedule.Destroy(legacy_rt.Executable(meta=meta.AuraeMeta(name="talker")))
second_pid = enable("echo second life; exec sleep 60")
new_lines = []
read_until(second_pid, "second life", new_lines).cancel()
drainer.join(10)
if drainer.is_alive():
    old_stream.cancel()
out({"first": first_pid, "second": second_pid, "new": new_lines, "old_rest": rest})
"""


def test_a_persistent_executable_made_again_does_not_replay_the_deleted_ones_output(
        stubs: Path, daemon: Daemon) -> None:
    result = run_client(stubs, daemon.socket, _TWO_LIVES)
    assert result["first"] != result["second"]
    assert result["new"] == ["second life"], result  # nothing of the destroyed one
    # The follower of the destroyed one was told and its stream ended (no new lines).
    assert result["old_rest"] == ["[provisioner] stream ended: the executable was deleted"]
    layer = daemon.layer
    assert [x.text for x in LogReader(layer.log_dir("talker")).read()] == ["second life"]
    retired = Path(layer.log_dir("talker")).parent / "_deleted" / "talker"
    assert [x.text for x in LogReader(str(retired)).read()] == ["first life"]


_BURST = """
pid = cells.Start(rt.CellServiceStartRequest(executable=rt.Executable(
    name="burst", command="seq 1 3000; exec sleep 60"))).pid
def read(metadata):
    items = []
    stream = observe.GetSubProcessStream(ob.GetSubProcessStreamRequest(
        channel_type=ob.LOG_CHANNEL_TYPE_STDOUT, process_id=pid), metadata=metadata,
        timeout=20)
    for item in stream:
        items.append(item.line)
        if item.line.endswith("3000"):
            stream.cancel()
            return items
import time
time.sleep(1)  # the whole burst is in the log: a backlog the follower gets at once
out({"single": read(()), "batched": read((("log-batching", "on"),)),
     "bad": error(lambda: list(observe.GetSubProcessStream(ob.GetSubProcessStreamRequest(
         process_id=pid), metadata=(("log-batching", "yes"),), timeout=5)))})
"""


def test_aurae_log_items_carry_one_line_each_unless_batching_is_asked(
        stubs: Path, daemon: Daemon) -> None:
    result = run_client(stubs, daemon.socket, _BURST)
    expected = [str(i) for i in range(1, 3001)]
    assert result["single"] == expected  # one line per item, as upstream sends them
    batched = result["batched"]
    assert "\n".join(batched).split("\n") == expected and len(batched) < len(expected)
    assert result["bad"][0] == "INVALID_ARGUMENT"
