"""Schema of the node store: row types, the ordered migrations, row conversions (and
the state directory's creation).

Kept apart from ``store.py`` (the connection and transaction logic) so that the
schema reads in one place. Tables, created by migration 1 (``*_ns`` = nanoseconds
since the epoch, UTC)::

    resources(kind, name, spec_json, manifest_set, created_at_ns, updated_at_ns)
        PRIMARY KEY (kind, name). The spec as last applied (opaque JSON text from the
        caller) and the manifest set (inventory) it belongs to; '' = a raw API call.
    processes(name PRIMARY KEY, cell, shim_pid, shim_start_time, pid, pid_start_time,
              state, exit_code, exit_signal, started_at_ns, exited_at_ns, restart_count)
        One row per executable; ``state`` is a :class:`ProcessState` value.
    holders(cell PRIMARY KEY, pid, start_time, namespaces)
        Namespace holders of isolated cells; ``namespaces`` is a JSON array of names.
    meta(key PRIMARY KEY, value)
        ``generation`` (decimal integer, starts at 0) and anything else.
    events(id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns, kind, name, action, message,
           generation)
        Append-only log, trimmed to the newest ``max_events`` rows.

The schema version is SQLite's ``PRAGMA user_version``. Migration *n* is
``MIGRATIONS[n - 1]``; a new schema change is one function appended to the list, and
:func:`migrate` (run at every open) applies those a database lacks.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Sequence

from provisioner.errors import FailedPrecondition, NodeError
from provisioner.model import Kind
from provisioner.pathnames import tidy_path
from provisioner.records import fields, record
from provisioner.state import ProcessPhase

TYPE_CHECKING = False  # (not typing's: importing typing costs ~3 ms a start)
if TYPE_CHECKING:
    from typing import Any

#: A process's lifecycle as the store records it: the same words as the observed state.
ProcessState = ProcessPhase


@record
class ResourceRecord:
    """A row of ``resources``: a resource as it was applied (its spec as JSON), with
    the manifest set that owns it.
    """

    kind: Kind
    name: str
    spec_json: str
    manifest_set: str
    created_at_ns: int
    updated_at_ns: int


@record
class ProcessRecord:
    """One executable's supervised process; pids are paired with their start times."""

    name: str
    cell: str = ""
    shim_pid: int | None = None
    shim_start_time: int | None = None
    pid: int | None = None
    pid_start_time: int | None = None
    state: ProcessState = ProcessState.PENDING
    exit_code: int | None = None
    exit_signal: int | None = None
    started_at_ns: int | None = None
    exited_at_ns: int | None = None
    restart_count: int = 0


@record
class HolderRecord:
    """A row of ``holders``: the namespace holder process of an isolated cell and the
    namespaces it keeps.
    """

    cell: str
    pid: int
    start_time: int
    namespaces: tuple[str, ...] = ()


@record
class Event:
    """A row of ``events``: something that happened to a resource (allocated, started,
    stopped, freed...), in order of its id.
    """

    id: int
    ts_ns: int
    kind: str
    name: str
    action: str
    message: str
    generation: int


Migration = Callable[[sqlite3.Connection], None]


def _migration_1(conn: sqlite3.Connection) -> None:
    for sql in (
        "CREATE TABLE resources (kind TEXT NOT NULL, name TEXT NOT NULL,"
        " spec_json TEXT NOT NULL, manifest_set TEXT NOT NULL DEFAULT '',"
        " created_at_ns INTEGER NOT NULL, updated_at_ns INTEGER NOT NULL,"
        " PRIMARY KEY (kind, name))",
        "CREATE INDEX resources_by_set ON resources (manifest_set)",
        "CREATE TABLE processes (name TEXT PRIMARY KEY, cell TEXT NOT NULL,"
        " shim_pid INTEGER, shim_start_time INTEGER, pid INTEGER, pid_start_time INTEGER,"
        " state TEXT NOT NULL, exit_code INTEGER, exit_signal INTEGER,"
        " started_at_ns INTEGER, exited_at_ns INTEGER, restart_count INTEGER NOT NULL)",
        "CREATE TABLE holders (cell TEXT PRIMARY KEY, pid INTEGER NOT NULL,"
        " start_time INTEGER NOT NULL, namespaces TEXT NOT NULL)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('generation', '0')",
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL,"
        " kind TEXT NOT NULL, name TEXT NOT NULL, action TEXT NOT NULL,"
        " message TEXT NOT NULL, generation INTEGER NOT NULL)",
        "CREATE INDEX events_by_object ON events (kind, name, id)",
        "CREATE INDEX events_by_time ON events (ts_ns)",
    ):
        conn.execute(sql)


#: Ordered: migration n is MIGRATIONS[n - 1]. Never edit one that has shipped.
MIGRATIONS: list[Migration] = [_migration_1]


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version of a store's database (SQLite ``user_version``)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_version(conn: sqlite3.Connection, path: str, latest: int) -> int:
    version = schema_version(conn)
    if version > latest:
        raise FailedPrecondition(
            f"state database {path} has schema version {version}, newer than the"
            f" {latest} this provisioner supports; upgrade the provisioner")
    return version


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply the migrations the database lacks, all in one transaction.

    ``conn`` is in autocommit mode (``isolation_level=None``). sqlite3 errors other
    than a failing migration are left to the caller to translate.
    """
    latest = len(MIGRATIONS)
    if _check_version(conn, path, latest) == latest:
        return  # the common case takes no write lock
    conn.execute("BEGIN IMMEDIATE")
    try:
        number = _check_version(conn, path, latest)  # another process may have migrated
        while number < latest:
            number += 1
            try:
                MIGRATIONS[number - 1](conn)
                conn.execute(f"PRAGMA user_version = {number:d}")
            except sqlite3.Error as e:
                raise NodeError(f"migrating state database {path} to schema version"
                                f" {number} failed: {e}") from e
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise

INSERT_EVENT = ("INSERT INTO events (ts_ns, kind, name, action, message, generation)"
                " VALUES (?, ?, ?, ?, ?, ?)")
RESOURCE_COLS = tuple(f.name for f in fields(ResourceRecord))
PROCESS_COLS = tuple(f.name for f in fields(ProcessRecord))
HOLDER_COLS = tuple(f.name for f in fields(HolderRecord))


def process_from_row(row: Sequence[Any]) -> ProcessRecord:
    """A ``processes`` row as a :class:`ProcessRecord`."""
    values = dict(zip(PROCESS_COLS, row, strict=True))
    values["state"] = ProcessState(values["state"])
    return ProcessRecord(**values)


def holder_to_row(h: HolderRecord) -> tuple[object, ...]:
    """A :class:`HolderRecord` as a ``holders`` row."""
    return (h.cell, h.pid, h.start_time, json.dumps(list(h.namespaces)))


def process_to_row(p: ProcessRecord) -> tuple[object, ...]:
    """A :class:`ProcessRecord` as a ``processes`` row."""
    # Field by field, not a generic walk over the fields: on the path of each start.
    row = [getattr(p, name) for name in PROCESS_COLS]
    return (*row[:6], p.state.value, *row[7:])


def holder_from_row(row: Sequence[Any]) -> HolderRecord:
    """A ``holders`` row as a :class:`HolderRecord`."""
    return HolderRecord(row[0], row[1], row[2], tuple(json.loads(row[3])))


def resource_from_row(row: Sequence[Any]) -> ResourceRecord:
    """A ``resources`` row as a :class:`ResourceRecord`."""
    return ResourceRecord(Kind(row[0]), *row[1:])


@functools.cache
def upsert_sql(table: str, cols: tuple[str, ...]) -> str:
    """INSERT of a row keyed by its first column that updates an existing row only
    where some column differs (so that rowcount says whether anything changed)."""
    names, marks, rest = ", ".join(cols), ", ".join("?" * len(cols)), cols[1:]
    if not rest:
        return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    sets = ", ".join(f"{c} = excluded.{c}" for c in rest)
    differs = f"({', '.join(rest)}) IS NOT ({', '.join(f'excluded.{c}' for c in rest)})"
    return (f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({cols[0]})"
            f" DO UPDATE SET {sets} WHERE {differs}")


def ensure_state_dir(state_dir: str | os.PathLike[str]) -> str:
    """Create ``state_dir`` (mode 0700) if missing; an existing one is left as it is.
    Returns its path, tidied as pathlib would (``a//b/`` -> ``a/b``)."""
    path = tidy_path(state_dir)
    try:
        try:
            os.mkdir(path, 0o700)
        except FileNotFoundError:  # as Path.mkdir(parents=True): the parents, then it
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    except FileExistsError:
        pass
    except OSError as e:
        raise NodeError(f"cannot create state directory {path}: {e}") from e
    return path
