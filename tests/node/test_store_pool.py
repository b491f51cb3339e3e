"""The store's bounded connections: many threads, few files, and still correct."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, LockBusy
from provisioner.model import Kind
from provisioner.node.state.store import Store


def open_files_on(path: str) -> int:
    """This process's descriptors open on ``path`` or its WAL / shared-memory files."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") in names:
                count += 1
        except OSError:
            pass
    return count


def test_sixty_four_threads_share_at_most_the_pool(tmp_path: Path) -> None:
    store = Store.open(tmp_path, readers=3)
    try:
        with store.transaction() as tx:
            tx.put_resource(Kind.CELL, "a", "{}")
        start = threading.Barrier(64)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                start.wait()
                for i in range(20):
                    assert [r.name for r in store.list_resources(Kind.CELL)][:1] == ["a"]
                    with store.snapshot():
                        store.generation()
                        store.list_processes()
                    if i % 5 == 0:
                        with store.transaction() as tx:
                            tx.put_resource(Kind.CELL, f"t{n}-{i}", "{}")
            except BaseException as exc:  # collected: a thread's assert must fail the test
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert store.pool.open_connections() <= 1 + 3
        # Two files per connection (database, WAL) and one shared-memory index.
        assert open_files_on(store.path) <= 2 * (1 + 3) + 1
        assert store.generation() == 1 + 64 * 4
    finally:
        store.close()
    assert open_files_on(store.path) == 0


def test_a_transaction_reads_its_own_writes_and_others_do_not(tmp_path: Path) -> None:
    store = Store.open(tmp_path, readers=1)
    try:
        seen: list[list[str]] = []
        with store.transaction() as tx:
            tx.put_resource(Kind.CELL, "pending", "{}")
            assert [r.name for r in store.list_resources()] == ["pending"]
            reader = threading.Thread(target=lambda: seen.append(
                [r.name for r in store.list_resources()]))
            reader.start()
            reader.join(5)
        assert seen == [[]]
        assert [r.name for r in store.list_resources()] == ["pending"]
    finally:
        store.close()


def test_all_readers_lent_is_lock_busy_after_the_timeout(tmp_path: Path) -> None:
    store = Store.open(tmp_path, readers=1, busy_timeout_s=0.2)
    try:
        entered, leave = threading.Event(), threading.Event()

        def hold() -> None:
            with store.snapshot():
                entered.set()
                leave.wait(5)

        holder = threading.Thread(target=hold)
        holder.start()
        assert entered.wait(5)
        with pytest.raises(LockBusy, match="reader connections"):
            store.generation()
        leave.set()
        holder.join(5)
        assert store.generation() == 0  # the reader came back
    finally:
        store.close()


def test_a_store_closed_while_a_reader_is_lent_closes_it_on_return(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with store.snapshot():
        store.generation()
        store.close()
    assert store.pool.open_connections() == 0
    with pytest.raises(FailedPrecondition, match="closed"):
        store.generation()


def test_borrow_and_give_back_lend_the_same_bounded_readers(tmp_path: Path) -> None:
    store = Store.open(tmp_path, readers=2, busy_timeout_s=0.2)
    try:
        a, b = store.pool.borrow(), store.pool.borrow()
        assert a is not b
        with pytest.raises(LockBusy, match="reader connections"):
            store.pool.borrow()  # both lent: waits for the timeout, then refuses
        store.pool.give_back(a)
        assert store.pool.borrow() is a  # an idle one is lent again, none is made
        assert store.pool.open_connections() == 3  # the writer and two readers
        store.pool.give_back(a)
        store.close()
        store.pool.give_back(b)  # given back after the close: closed, not kept
        assert store.pool.open_connections() == 0
    finally:
        store.close()


def test_event_bounds_beyond_64_bits_are_clamped(tmp_path: Path) -> None:
    """Fuzzing found it: a time filter in the far future (ns) overflowed SQLite."""
    store = Store.open(tmp_path)
    try:
        with store.transaction() as tx:
            tx.put_resource(Kind.CELL, "a", "{}")
            tx.record_event("Cell", "a", "allocated")
        assert len(store.events(since_ns=-(2**70), until_ns=2**70)) == 1
        assert store.events(since_ns=2**70) == []
        assert store.events(since_id=2**64, limit=2**64) == []
    finally:
        store.close()
