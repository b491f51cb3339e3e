"""The durable store on real files: migrations, durability, generation, WAL readers."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import FailedPrecondition, InvalidArgument, LockBusy, NodeError
from provisioner.model import Kind
from provisioner.node.state import schema as store_schema
from provisioner.node.state.store import (
    HolderRecord,
    ProcessRecord,
    ProcessState,
    Store,
)

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, *args: str, timeout: float = 10.0) -> str:
    """Run ``code`` in a fresh interpreter (another process) and return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path) -> Iterator[Store]:
    with Store.open(state_dir) as s:
        yield s


def test_open_creates_private_dir_wal_db_and_schema(state_dir: Path, store: Store) -> None:
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "state.db").stat().st_mode) == 0o600
    assert store.schema_version() == len(store_schema.MIGRATIONS) == 1
    assert store.generation() == 0
    with sqlite3.connect(state_dir / "state.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_run_once_and_a_second_one_is_one_function(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(state_dir).close()  # at version 1
    calls: list[int] = []

    def migration_2(conn: sqlite3.Connection) -> None:
        calls.append(2)
        conn.execute("ALTER TABLE resources ADD COLUMN note TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(store_schema, "MIGRATIONS", [*store_schema.MIGRATIONS, migration_2])
    for _ in range(2):
        with Store.open(state_dir) as s:
            assert s.schema_version() == 2
    assert calls == [2]
    with sqlite3.connect(state_dir / "state.db") as raw:
        cols = [r[1] for r in raw.execute("PRAGMA table_info(resources)")]
    assert "note" in cols


def test_reopen_keeps_everything(state_dir: Path) -> None:
    proc = ProcessRecord("web", cell="a/b", shim_pid=10, shim_start_time=11, pid=12,
                         pid_start_time=13, state=ProcessState.RUNNING, started_at_ns=5)
    holder = HolderRecord("a", 20, 21, ("pid", "net"))
    with Store.open(state_dir) as s, s.transaction() as tx:
        tx.put_resource(Kind.CELL, "a", '{"name": "a"}', "set1")
        tx.put_process(proc)
        tx.put_holder(holder)
        tx.set_meta("daemon", "v1")
        tx.record_event("Cell", "a", "allocated", "ok")
    with Store.open(state_dir) as s:
        res = s.get_resource(Kind.CELL, "a")
        assert res is not None and res.kind is Kind.CELL
        assert (res.spec_json, res.manifest_set) == ('{"name": "a"}', "set1")
        assert s.get_process("web") == proc
        assert s.get_holder("a") == holder
        assert s.get_meta("daemon") == "v1"
        assert [(e.action, e.generation) for e in s.events()] == [("allocated", 1)]
        assert s.generation() == 1


def test_another_process_sees_committed_writes_both_ways(state_dir: Path,
                                                         store: Store) -> None:
    run_python("""
        import sys
        from provisioner.model import Kind
        from provisioner.node.state.store import Store
        with Store.open(sys.argv[1]) as s, s.transaction() as tx:
            tx.put_resource(Kind.EXECUTABLE, "x", "{}", "")
    """, str(state_dir))
    assert store.get_resource(Kind.EXECUTABLE, "x") is not None
    assert store.generation() == 1
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "c", "{}", "s")
    out = run_python("""
        import sys
        from provisioner.node.state.store import Store
        with Store.open(sys.argv[1]) as s:
            print(s.generation(), [r.name for r in s.list_resources()])
    """, str(state_dir))
    assert out.strip() == "2 ['c', 'x']"


def test_generation_bumps_once_per_changing_transaction(store: Store) -> None:
    def gen_after(change: Callable[[Store], object]) -> int:
        before = store.generation()
        with store.transaction() as tx:
            change(tx)
        return store.generation() - before

    assert gen_after(lambda tx: [tx.put_resource(Kind.CELL, n, "{}") for n in "abc"]) == 1
    assert gen_after(lambda tx: None) == 0
    assert gen_after(lambda tx: tx.list_resources()) == 0
    assert gen_after(lambda tx: tx.put_resource(Kind.CELL, "a", "{}")) == 0  # identical
    assert gen_after(lambda tx: tx.put_resource(Kind.CELL, "a", "{}", "other-set")) == 1
    assert gen_after(lambda tx: tx.delete_resource(Kind.CELL, "nope")) == 0
    assert gen_after(lambda tx: tx.delete_resource(Kind.CELL, "a")) == 1
    assert gen_after(lambda tx: tx.put_process(ProcessRecord("p"))) == 1
    assert gen_after(lambda tx: tx.put_process(ProcessRecord("p"))) == 0
    assert gen_after(lambda tx: tx.put_holder(HolderRecord("h", 1, 2))) == 1
    assert gen_after(lambda tx: tx.set_meta("k", "v")) == 1
    assert gen_after(lambda tx: tx.set_meta("k", "v")) == 0
    assert gen_after(lambda tx: tx.set_meta("k", None)) == 1
    assert gen_after(lambda tx: tx.record_event("Cell", "b", "noted")) == 0
    assert store.events()[-1].generation == store.generation()


def test_put_resource_keeps_created_and_moves_updated(store: Store) -> None:
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "a", "{}")
    first = store.get_resource(Kind.CELL, "a")
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "a", '{"x": 1}')
    second = store.get_resource(Kind.CELL, "a")
    assert first is not None and second is not None
    assert second.created_at_ns == first.created_at_ns
    assert second.updated_at_ns > first.updated_at_ns


def test_failing_transaction_rolls_back_everything(store: Store) -> None:
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "keep", "{}")
    with pytest.raises(ZeroDivisionError), store.transaction() as tx:
        tx.put_resource(Kind.CELL, "gone", "{}")
        tx.delete_resource(Kind.CELL, "keep")
        tx.record_event("Cell", "gone", "allocated")
        _ = 1 / 0
    assert [r.name for r in store.list_resources()] == ["keep"]
    assert store.generation() == 1
    assert store.events() == []


def test_nested_transaction_is_a_savepoint(store: Store) -> None:
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "outer", "{}")
        with pytest.raises(KeyError), tx.transaction() as inner:
            inner.put_resource(Kind.CELL, "inner", "{}")
            inner.record_event("Cell", "inner", "allocated")
            raise KeyError("x")
        tx.record_event("Cell", "outer", "allocated")
    assert [r.name for r in store.list_resources()] == ["outer"]
    assert [e.name for e in store.events()] == ["outer"]
    assert store.generation() == 1


def test_writes_outside_a_transaction_are_refused(store: Store) -> None:
    with pytest.raises(FailedPrecondition):
        store.put_resource(Kind.CELL, "a", "{}")
    with pytest.raises(FailedPrecondition):
        store.record_event("Cell", "a", "x")
    with pytest.raises(InvalidArgument), store.transaction() as tx:
        tx.set_meta("generation", "7")


def test_listing_filters(store: Store) -> None:
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "b", "{}", "s1")
        tx.put_resource(Kind.CELL, "a", "{}", "s2")
        tx.put_resource(Kind.EXECUTABLE, "a", "{}", "s1")
        tx.put_process(ProcessRecord("p2", cell="c1"))
        tx.put_process(ProcessRecord("p1", cell="c2"))
    assert [(r.kind, r.name) for r in store.list_resources()] == [
        (Kind.CELL, "a"), (Kind.CELL, "b"), (Kind.EXECUTABLE, "a")]
    assert [r.name for r in store.list_resources(kind=Kind.CELL)] == ["a", "b"]
    assert [r.kind for r in store.list_resources(manifest_set="s1")] == [
        Kind.CELL, Kind.EXECUTABLE]
    assert [p.name for p in store.list_processes()] == ["p1", "p2"]
    assert [p.name for p in store.list_processes(cell="c1")] == ["p2"]


def test_listing_within_a_cell_path(store: Store) -> None:
    # Neighbours by prefix ('web-2', 'webx', 'web.') and by byte order ('web-', '0' and
    # '/' sort around each other) are not below 'web'.
    cells = ["we", "web", "web-2", "web.x", "web/a", "web/a/b", "web0", "webx", "wec"]
    with store.transaction() as tx:
        for cell in cells:
            tx.put_resource(Kind.CELL, cell, "{}", "s")
            tx.put_process(ProcessRecord(f"p-{cell.replace('/', '-')}", cell=cell))
        tx.put_resource(Kind.EXECUTABLE, "web/a", "{}", "s")  # another kind: not a cell
    assert [r.name for r in store.list_resources(Kind.CELL, within="web")] == [
        "web", "web/a", "web/a/b"]
    assert [r.name for r in store.list_resources(Kind.CELL, within="web/a")] == [
        "web/a", "web/a/b"]
    assert [(r.kind, r.name) for r in store.list_resources(within="web/a")] == [
        (Kind.CELL, "web/a"), (Kind.CELL, "web/a/b"), (Kind.EXECUTABLE, "web/a")]
    assert store.list_resources(Kind.CELL, manifest_set="other", within="web") == []
    assert store.list_resources(Kind.CELL, within="nothing") == []
    assert [p.cell for p in store.list_processes(within="web")] == ["web", "web/a", "web/a/b"]
    assert [p.cell for p in store.list_processes(cell="web/a", within="web")] == ["web/a"]
    assert [p.cell for p in store.list_processes(cell="webx", within="web")] == []


def test_events_filters_and_follow(store: Store) -> None:
    with store.transaction() as tx:
        tx.record_event("Cell", "a", "allocated")
        tx.record_event("Executable", "x", "started")
    mid = time.time_ns()
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "a", "{}")
        tx.record_event("Cell", "a", "changed")
    all_events = store.events()
    assert [e.id for e in all_events] == [1, 2, 3]
    assert [e.generation for e in all_events] == [0, 0, 1]
    assert [e.action for e in store.events(since_id=1)] == ["started", "changed"]
    assert [e.action for e in store.events(kind="Cell", name="a")] == ["allocated", "changed"]
    assert [e.action for e in store.events(since_ns=mid)] == ["changed"]
    assert [e.action for e in store.events(until_ns=mid)] == ["allocated", "started"]
    assert [e.action for e in store.events(limit=1)] == ["allocated"]
    assert store.last_event_id() == 3


def test_events_are_bounded(state_dir: Path) -> None:
    with Store.open(state_dir, max_events=10) as s:
        for batch in range(5):
            with s.transaction() as tx:
                for i in range(5):
                    tx.record_event("Cell", "a", f"e{batch * 5 + i}")
        kept = s.events()
        assert [e.id for e in kept] == list(range(16, 26))
        assert kept[-1].action == "e24"


def test_reader_in_another_process_is_not_blocked_by_open_write(state_dir: Path,
                                                                store: Store) -> None:
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "committed", "{}")
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "pending", "{}")
        started = time.monotonic()
        out = run_python("""
            import json, sys
            from provisioner.node.state.store import Store
            with Store.open(sys.argv[1], busy_timeout_s=30) as s:
                print(json.dumps([s.generation(), [r.name for r in s.list_resources()]]))
        """, str(state_dir))
        assert time.monotonic() - started < 5
        assert json.loads(out) == [1, ["committed"]]
        # A second writer process, meanwhile, waits for the busy timeout and gives up.
        out = run_python("""
            import sys
            from provisioner.errors import LockBusy
            from provisioner.model import Kind
            from provisioner.node.state.store import Store
            with Store.open(sys.argv[1], busy_timeout_s=0.2) as s:
                try:
                    with s.transaction() as tx:
                        tx.put_resource(Kind.CELL, "other", "{}")
                except LockBusy as e:
                    print("busy", e)
        """, str(state_dir))
        assert out.startswith("busy") and str(state_dir / "state.db") in out
    assert store.generation() == 2


def test_threads_share_a_store(store: Store) -> None:
    seen: list[list[str]] = []
    with store.transaction() as tx:
        tx.put_resource(Kind.CELL, "pending", "{}")
        reader = threading.Thread(target=lambda: seen.append(
            [r.name for r in store.list_resources()]))
        reader.start()
        reader.join(5)
    assert seen == [[]]

    def write(n: int) -> None:
        for i in range(10):
            with store.transaction() as tx:
                tx.put_resource(Kind.CELL, f"t{n}-{i}", "{}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert store.generation() == 1 + 40
    assert len(store.list_resources()) == 41


def test_future_schema_version_is_refused(state_dir: Path) -> None:
    Store.open(state_dir).close()
    with sqlite3.connect(state_dir / "state.db") as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(FailedPrecondition, match=r"schema version 99.*upgrade"):
        Store.open(state_dir)


def test_corrupt_file_names_the_file(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "state.db").write_bytes(b"this is not an SQLite database" * 200)
    with pytest.raises(NodeError) as err:
        Store.open(state_dir)
    assert str(state_dir / "state.db") in str(err.value)
    assert not isinstance(err.value, LockBusy)


def test_closed_store_refuses_use(state_dir: Path) -> None:
    s = Store.open(state_dir)
    s.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        s.generation()


def test_observations_are_committed_without_bumping_the_generation(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with store.transaction():
        store.put_process(ProcessRecord(name="api", state=ProcessState.RUNNING, pid=10))
    before = store.generation()
    with store.transaction(observation=True):
        store.put_process(ProcessRecord(name="api", state=ProcessState.EXITED, exit_code=137))
        store.record_event("Executable", "api", "exited", "exited with status 137")
    assert store.generation() == before
    record = store.get_process("api")
    assert record is not None and record.exit_code == 137
    assert store.events(kind="Executable")[-1].message == "exited with status 137"
    store.close()


def test_paths_are_spelt_as_pathlib_spells_them(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages name the files as they did when the store used pathlib (``./a//`` ->
    ``a``), although it no longer imports it (start-up cost)."""
    from provisioner.node.state.lock import WriterLock

    monkeypatch.chdir(tmp_path)
    with Store.open_read_only("./state//") as store:  # before it exists
        assert store.path == "state/state.db"
    with Store.open("./state//") as store:
        assert store.path == "state/state.db"
    with Store.open_read_only("./state//") as store:
        assert store.path == "state/state.db"
    assert WriterLock("./state//").path == "state/lock"
    assert WriterLock(Path("state")).state_dir == "state"


def test_a_state_dir_it_may_not_read_is_not_taken_for_a_fresh_node(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a missing database is an empty node: EACCES (a user's ``plan`` against
    root's state directory) is raised, as pathlib's ``exists`` raised it."""
    Store.open(state_dir).close()
    real_stat = os.stat

    def refused(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.fspath(path).startswith(str(state_dir)):
            raise PermissionError(13, "Permission denied", path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refused)
    with pytest.raises(PermissionError):
        Store.open_read_only(state_dir)
