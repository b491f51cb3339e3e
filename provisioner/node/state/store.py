"""The durable store of a node: SQLite (stdlib) in ``<state_dir>/state.db``.

The tables, row types and migrations are in ``store_schema.py`` (re-exported here).
At open, the migrations the file lacks run in one transaction, each followed by
setting ``PRAGMA user_version`` to its number; a file newer than the code is refused
(:class:`FailedPrecondition`), an unreadable one raises :class:`NodeError`.

Writes happen only inside :meth:`Store.transaction` (``BEGIN IMMEDIATE``). A committed
transaction that changed anything bumps ``generation`` exactly once; a put of an
identical row is not a change. Events recorded in a transaction are written at commit
and carry the generation the transaction produced (or the current one if it changed
nothing, in which case no bump happens). Transactions nest as savepoints.

Concurrency: the database is in WAL mode, so readers (another thread, or another
process) never wait for a writer and see the last committed state. One :class:`Store`
may be shared by any number of threads over a bounded set of connections
(``store_pool.py``): the thread in a transaction uses the one writer connection for
all of it, so its open transaction is invisible to, and never blocks, reads in other
threads, which borrow one of ``readers`` reader connections per statement (or per
snapshot). Writers from different processes are serialized by SQLite's write lock
(busy timeout ``busy_timeout_s``, then :class:`LockBusy`), writers from threads of one
process first by a lock of the Store: SQLite's busy handler waits by sleeping (1, 2,
5, 10 ms...), so threads contending in SQLite would each sleep where a hand-over is
instant. The *writer lock* of ``provisioner.node.state.lock`` is separate and readers never
need it. The open files of a store are thus bounded (two per connection), whatever
the number of threads.

Durability: ``synchronous=NORMAL`` in WAL mode; a commit survives a crash of the
process, and a power loss may lose the last commits but never corrupts the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence

from provisioner.defaults import DEFAULT_STATE_DIR
from provisioner.errors import FailedPrecondition, InvalidArgument, LockBusy, NodeError
from provisioner.model import Kind
from provisioner.node.state import schema as _schema
from provisioner.node.state.pool import DEFAULT_READERS, ConnectionPool
from provisioner.node.state.schema import (
    HOLDER_COLS,
    PROCESS_COLS,
    RESOURCE_COLS,
    Event,
    HolderRecord,
    ProcessRecord,
    ProcessState,
    ResourceRecord,
    ensure_state_dir,
    holder_from_row,
    holder_to_row,
    process_from_row,
    process_to_row,
    resource_from_row,
)
from provisioner.pathnames import tidy_path
from provisioner.records import field, record

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_STATE_DIR", "Event", "HolderRecord", "ProcessRecord", "ProcessState",
    "ResourceRecord", "Store", "ensure_state_dir",
]

DB_FILE = "state.db"
DEFAULT_MAX_EVENTS = 100_000
GENERATION_KEY = "generation"
_RESOURCE_SELECT = ", ".join(RESOURCE_COLS)
_PROCESS_SELECT = ", ".join(PROCESS_COLS)
_HOLDER_SELECT = ", ".join(HOLDER_COLS)
#: ``column`` is a cell path equal to the first parameter, or below it: between
#: ``path + "/"`` and ``path + "0"`` ('0' follows '/' in the byte order SQLite compares
#: text in), a range an index on the column can serve.
_WITHIN = "({column} = ? OR ({column} > ? AND {column} < ?))"


def _int64(value: int) -> int:
    """VALUE within SQLite's INTEGER range."""
    return max(-(2**63), min(2**63 - 1, int(value)))


def _within_bounds(path: str) -> tuple[str, str, str]:
    return path, path + "/", path + "0"


def _exists(path: str) -> bool:
    """As ``pathlib.Path.exists``: False for a missing file, but unlike
    ``os.path.exists`` an error such as EACCES is raised (an unreadable state directory
    is not a node never used)."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return False
        raise
    except ValueError:  # a NUL in the path
        return False
    return True


@record(frozen=False)
class _Tx:
    """Book-keeping of the open transaction of one thread."""

    changed: bool = False
    bump: bool = True  # False for observations (see Store.transaction)
    events: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    marks: list[tuple[bool, int]] = field(default_factory=list)  # one per savepoint


class Store:
    """The node's durable state. Create with :meth:`Store.open`; see the module doc."""

    def __init__(self, path: str, max_events: int, busy_timeout_s: float,
                 readers: int = DEFAULT_READERS, uri: str | None = None) -> None:
        self.path = path
        self.max_events = max_events
        self._busy_timeout_s = busy_timeout_s
        # Per thread: ``conn`` while the thread is in a transaction (the writer) or a
        # snapshot (a lent reader), ``tx`` and ``snapshot`` as their book-keeping.
        self._local = threading.local()
        self.pool = ConnectionPool(path, busy_timeout_s, readers, uri)
        self._trim_floor = 0  # every event id below this is trimmed already
        self._write_lock = threading.Lock()  # one top-level transaction per process

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *,
             max_events: int = DEFAULT_MAX_EVENTS, busy_timeout_s: float = 5.0,
             readers: int = DEFAULT_READERS) -> Store:
        """Open (creating if needed) the store and apply pending migrations;
        ``readers``: how many reader connections its threads share at most."""
        path = tidy_path(os.path.join(ensure_state_dir(state_dir), DB_FILE))
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as e:
            raise NodeError(f"cannot open state database {path}: {e}") from e
        store = cls(path, max_events, busy_timeout_s, readers)
        try:
            with store._errors(), store._write_lock:
                conn = store.pool.writer()
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                _schema.migrate(conn, path)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_read_only(cls, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *,
                       busy_timeout_s: float = 5.0) -> Store:
        """The store for looking only (plan, status, check mode): nothing is created.

        A state directory without a database is a node never used: the store is then an
        empty one in memory (generation 0, no records), and writes to it are lost with
        it. An existing database is opened read-only (``mode=ro``); one of an older
        schema is opened normally instead, so that it is migrated (a used node).
        """
        path = tidy_path(os.path.join(state_dir, DB_FILE))
        if not _exists(path):
            memory = f"file:provisioner-empty-{os.urandom(16).hex()}?mode=memory&cache=shared"
            store = cls(path, DEFAULT_MAX_EVENTS, busy_timeout_s, uri=memory)
            try:
                with store._errors(), store._write_lock:
                    _schema.migrate(store.pool.writer(), path)  # the writer keeps it alive
            except BaseException:
                store.close()
                raise
            return store
        import urllib.parse  # (~3 ms with ipaddress: only for a read-only store)

        read_only = f"file:{urllib.parse.quote(os.path.realpath(path))}?mode=ro"
        store = cls(path, DEFAULT_MAX_EVENTS, busy_timeout_s, uri=read_only)
        try:
            version = store.schema_version()
        except BaseException:
            store.close()
            raise
        if version == len(_schema.MIGRATIONS):
            return store
        store.close()
        return cls.open(state_dir, busy_timeout_s=busy_timeout_s)

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        self.pool.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections and errors ----------------------------------------------------------

    def _bound(self) -> sqlite3.Connection | None:
        """The connection this thread's transaction or snapshot uses, if it is in one."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        return conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate sqlite3 errors into the provisioner's hierarchy, naming the file."""
        try:
            yield
        except sqlite3.Error as e:
            raise self._translate(e) from e

    def _translate(self, e: sqlite3.Error) -> Exception:
        if isinstance(e, sqlite3.OperationalError):
            if "locked" in str(e) or "busy" in str(e):
                return LockBusy(f"state database {self.path} is busy"
                                f" (waited {self._busy_timeout_s}s): {e}")
            return NodeError(f"state database {self.path}: {e}")
        if isinstance(e, sqlite3.DatabaseError):
            return NodeError(f"state database {self.path} is corrupt or unreadable: {e}")
        return NodeError(f"state database {self.path}: {e}")

    # _query and _write run for every statement: a plain try (not _errors, whose
    # generator costs more than a simple statement's own execution).

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            conn = self._bound()
            if conn is not None:
                return conn.execute(sql, params).fetchall()
            conn = self.pool.borrow()
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                self.pool.give_back(conn)
        except sqlite3.Error as e:
            raise self._translate(e) from e

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a modifying statement in the open transaction; returns the row count."""
        tx: _Tx | None = getattr(self._local, "tx", None)
        conn = self._bound()
        if tx is None or conn is None:
            raise FailedPrecondition("store writes must happen inside Store.transaction()")
        try:
            count: int = conn.execute(sql, params).rowcount
        except sqlite3.Error as e:
            raise self._translate(e) from e
        if count:
            tx.changed = True
        return count

    # -- transactions ------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, observation: bool = False) -> Iterator[Store]:
        """One atomic change. Commits on success, rolls everything back on exception.

        ``observation=True`` records what was observed rather than done (a process
        found dead, its exit status): it is committed like any change but does not
        bump the generation, so a plan made before it is not made stale by it.
        """
        if getattr(self._local, "snapshot", False):
            raise FailedPrecondition("cannot open a write transaction inside a snapshot")
        tx: _Tx | None = getattr(self._local, "tx", None)
        conn = self._bound()
        if tx is not None and conn is not None:
            yield from self._savepoint(conn, tx)
            return
        if not self._write_lock.acquire(timeout=self._busy_timeout_s):
            raise LockBusy(f"state database {self.path} is busy (another thread's "
                           f"transaction, waited {self._busy_timeout_s}s)")
        # (Plain try blocks, not _errors(): its generator costs as much as a statement.)
        try:
            conn = self.pool.writer()
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as e:
            self._write_lock.release()
            if isinstance(e, sqlite3.Error):
                raise self._translate(e) from e
            raise
        self._local.conn = conn
        tx = self._local.tx = _Tx(bump=not observation)
        try:
            yield self
            try:
                trimmed_to = self._finish(conn, tx)
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise self._translate(e) from e
            if trimmed_to is not None:  # only once committed: a rollback undoes a trim
                self._trim_floor = max(self._trim_floor, trimmed_to + 1)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            self._local.tx = self._local.conn = None
            self._write_lock.release()

    def _savepoint(self, conn: sqlite3.Connection, tx: _Tx) -> Iterator[Store]:
        name = f"sp{len(tx.marks)}"
        tx.marks.append((tx.changed, len(tx.events)))
        with self._errors():
            conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            tx.changed, n_events = tx.marks.pop()
            del tx.events[n_events:]
            with self._errors():
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        tx.marks.pop()
        with self._errors():
            conn.execute(f"RELEASE {name}")

    def _finish(self, conn: sqlite3.Connection, tx: _Tx) -> int | None:
        """Bump the generation, write the events; the id events were trimmed up to."""
        gen = int(conn.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ? RETURNING value",
            (GENERATION_KEY,)).fetchone()[0]) if tx.changed and tx.bump else None
        if not tx.events:
            return None
        rows = [(*e, self.generation() if gen is None else gen) for e in tx.events]
        if len(rows) == 1:
            last = conn.execute(_schema.INSERT_EVENT, rows[0]).lastrowid
        else:
            conn.executemany(_schema.INSERT_EVENT, rows)
            last = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
        # ids only grow (AUTOINCREMENT): a rowid range delete keeps exactly the newest
        # max_events rows (rollbacks leave no gaps), and is skipped when nothing is that old.
        cutoff = int(last or 0) - self.max_events
        if cutoff < self._trim_floor:
            return None
        conn.execute("DELETE FROM events WHERE id <= ?", (cutoff,))
        return cutoff

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Store]:
        """Read several things from one consistent committed state (a read transaction)."""
        if getattr(self._local, "tx", None) or getattr(self._local, "snapshot", False):
            yield self
            return
        with self._errors(), self.pool.reader() as conn:
            conn.execute("BEGIN DEFERRED")
            self._local.snapshot, self._local.conn = True, conn
            try:
                yield self
            finally:
                self._local.snapshot, self._local.conn = False, None
                conn.execute("COMMIT")

    # -- meta --------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The version of the database's schema (its applied migrations)."""
        with self._errors():
            conn = self._bound()
            if conn is not None:
                return _schema.schema_version(conn)
            with self.pool.reader() as conn:
                return _schema.schema_version(conn)

    def generation(self) -> int:
        """The node's generation: it grows with every committed change of what is recorded."""
        return int(self._query("SELECT value FROM meta WHERE key = ?", (GENERATION_KEY,))[0][0])

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or None."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str | None) -> bool:
        """Set (or with ``None`` delete) a meta value; returns whether it changed."""
        if key == GENERATION_KEY:
            raise InvalidArgument("the generation is maintained by the store itself")
        if value is None:
            return self._write("DELETE FROM meta WHERE key = ?", (key,)) > 0
        return self._write("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                           " DO UPDATE SET value = excluded.value WHERE value != excluded.value",
                           (key, value)) > 0

    # -- resources ---------------------------------------------------------------------

    def put_resource(self, kind: Kind, name: str, spec_json: str,
                     manifest_set: str = "") -> bool:
        """Record the spec as applied; returns False when it was already exactly so."""
        now = time.time_ns()
        return self._write(
            "INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE"
            " SET spec_json = excluded.spec_json, manifest_set = excluded.manifest_set,"
            " updated_at_ns = excluded.updated_at_ns WHERE spec_json != excluded.spec_json"
            " OR manifest_set != excluded.manifest_set",
            (kind.value, name, spec_json, manifest_set, now, now)) > 0

    def get_resource(self, kind: Kind, name: str) -> ResourceRecord | None:
        """The applied record of a resource, or None."""
        rows = self._query(f"SELECT {_RESOURCE_SELECT} FROM resources WHERE kind = ?"
                           " AND name = ?", (kind.value, name))
        return resource_from_row(rows[0]) if rows else None

    def delete_resource(self, kind: Kind, name: str) -> bool:
        """Forget a resource; True if it was recorded."""
        return self._write("DELETE FROM resources WHERE kind = ? AND name = ?",
                           (kind.value, name)) > 0

    def list_resources(self, kind: Kind | None = None, manifest_set: str | None = None, *,
                       within: str | None = None) -> list[ResourceRecord]:
        """Resources ordered by (kind, name), optionally filtered; ``within``: only the
        one named so and those below it (``within/...``, cell paths)."""
        where: list[str] = []
        params: list[object] = []
        for clause, value in (("kind = ?", kind.value if kind is not None else None),
                              ("manifest_set = ?", manifest_set)):
            if value is not None:  # only present filters, so the primary key can be used
                where.append(clause)
                params.append(value)
        if within is not None:
            where.append(_WITHIN.format(column="name"))
            params.extend(_within_bounds(within))
        rows = self._query(f"SELECT {_RESOURCE_SELECT} FROM resources"
                           f"{' WHERE ' + ' AND '.join(where) if where else ''}"
                           " ORDER BY kind, name", params)
        return [resource_from_row(r) for r in rows]

    # -- processes and holders -----------------------------------------------------------

    def _put_row(self, table: str, cols: Sequence[str], row: tuple[object, ...]) -> bool:
        """Insert or replace a row keyed by its first column, unless identical (one
        statement: the update only happens where some column differs)."""
        return self._write(_schema.upsert_sql(table, tuple(cols)), row) > 0

    def put_process(self, record: ProcessRecord) -> bool:
        """Record (or replace) a supervised process; True if anything changed."""
        return self._put_row("processes", PROCESS_COLS, process_to_row(record))

    def get_process(self, name: str) -> ProcessRecord | None:
        """The record of a supervised process, or None."""
        rows = self._query(f"SELECT {_PROCESS_SELECT} FROM processes WHERE name = ?", (name,))
        return process_from_row(rows[0]) if rows else None

    def delete_process(self, name: str) -> bool:
        """Forget a supervised process; True if it was recorded."""
        return self._write("DELETE FROM processes WHERE name = ?", (name,)) > 0

    def list_processes(self, cell: str | None = None, *,
                       within: str | None = None) -> list[ProcessRecord]:
        """Processes ordered by name; ``cell``: only those of that cell; ``within``: only
        those of that cell and of the cells below it."""
        where: list[str] = []
        params: list[object] = []
        if cell is not None:
            where.append("cell = ?")
            params.append(cell)
        if within is not None:
            where.append(_WITHIN.format(column="cell"))
            params.extend(_within_bounds(within))
        rows = self._query(f"SELECT {_PROCESS_SELECT} FROM processes"
                           f"{' WHERE ' + ' AND '.join(where) if where else ''}"
                           " ORDER BY name", params)
        return [process_from_row(r) for r in rows]

    def put_holder(self, record: HolderRecord) -> bool:
        """Record (or replace) the namespace holder of a cell; True if anything changed."""
        return self._put_row("holders", HOLDER_COLS, holder_to_row(record))

    def get_holder(self, cell: str) -> HolderRecord | None:
        """The namespace holder of a cell, or None."""
        rows = self._query(f"SELECT {_HOLDER_SELECT} FROM holders WHERE cell = ?", (cell,))
        return holder_from_row(rows[0]) if rows else None

    def delete_holder(self, cell: str) -> bool:
        """Forget the namespace holder of a cell; True if it was recorded."""
        return self._write("DELETE FROM holders WHERE cell = ?", (cell,)) > 0

    def list_holders(self) -> list[HolderRecord]:
        """Every recorded namespace holder, by cell."""
        rows = self._query(f"SELECT {_HOLDER_SELECT} FROM holders ORDER BY cell")
        return [holder_from_row(r) for r in rows]

    # -- events ------------------------------------------------------------------------

    def record_event(self, kind: str, name: str, action: str, message: str = "") -> None:
        """Append an event; it is written when the enclosing transaction commits."""
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            raise FailedPrecondition("events must be recorded inside Store.transaction()")
        tx.events.append((time.time_ns(), str(kind), name, action, message))

    def events(self, since_id: int = 0, limit: int = 1000, kind: str | None = None,
               name: str | None = None, since_ns: int | None = None,
               until_ns: int | None = None) -> list[Event]:
        """Events with ``id > since_id`` in id order; ``since_ns <= ts_ns < until_ns``.

        Followers poll with the last id they saw as ``since_id``.
        """
        # Bounds from a request may lie beyond SQLite's 64-bit integers (a time in the
        # year 3000 in ns): clamped, they mean the same ("from the start", "no end").
        where: list[str] = ["id > ?"]
        params: list[object] = [_int64(since_id)]
        limit = max(0, _int64(limit))
        for clause, value in (("kind = ?", kind), ("name = ?", name),
                              ("ts_ns >= ?", None if since_ns is None else _int64(since_ns)),
                              ("ts_ns < ?", None if until_ns is None else _int64(until_ns))):
            if value is not None:  # only present filters, so the indexes can be used
                where.append(clause)
                params.append(value)
        rows = self._query(f"SELECT id, ts_ns, kind, name, action, message, generation"
                           f" FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
                           [*params, limit])
        return [Event(*r) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest event (0 if none): where a follower starts "from now"."""
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM events")[0][0])
