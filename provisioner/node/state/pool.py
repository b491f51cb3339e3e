"""The store's SQLite connections: one writer and a small, bounded pool of readers.

A connection holds two file descriptors (the database and its WAL; the shared-memory
index is one descriptor per process), so a connection per thread made the daemon's
open files grow with its thread pool (71 threads held 142 files). Here the number is
bounded whatever the number of threads: at most ``1 + readers`` connections.

* The **writer** connection is used only by the thread holding the store's write
  lock, for the whole of its transaction (its reads see its own uncommitted writes).
* A **reader** is borrowed for one statement, or for a whole snapshot, and given back;
  when all are lent, a thread waits (up to the busy timeout, then :class:`LockBusy`).
  WAL mode lets readers run while the writer writes, each seeing the last commit.

Connections are made lazily (an idle store holds one) and may move between threads
(``check_same_thread=False``): the pool, not SQLite, makes sure that no two threads use
one at the same time.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator

from provisioner.errors import FailedPrecondition, LockBusy

__all__ = ["DEFAULT_READERS", "ConnectionPool"]

#: Readers lent at once. SQLite releases the GIL while it steps, so a few readers let
#: threads overlap their queries; more would only hold more files.
DEFAULT_READERS = 4


class ConnectionPool:
    """One writer connection and at most ``readers`` reader connections to ``path``."""

    def __init__(self, path: str, busy_timeout_s: float,
                 readers: int = DEFAULT_READERS, uri: str | None = None) -> None:
        """``uri``: an SQLite URI to open instead of ``path`` (read-only, in memory)."""
        if readers < 1:
            raise ValueError("a store needs at least one reader connection")
        self.path = path
        self.uri = uri
        self.busy_timeout_s = busy_timeout_s
        self.max_readers = readers
        self._idle: list[sqlite3.Connection] = []
        self._made = 0  # reader connections in existence (idle or lent)
        self._cond = threading.Condition()
        self._writer: sqlite3.Connection | None = None
        self._closed = False

    def connect(self) -> sqlite3.Connection:
        """A new connection (sqlite3.Error if the file cannot be opened)."""
        conn = sqlite3.connect(self.uri or self.path, timeout=self.busy_timeout_s,
                               isolation_level=None, check_same_thread=False,
                               uri=self.uri is not None)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"state database {self.path} is closed")

    def writer(self) -> sqlite3.Connection:
        """The writer connection; only for the holder of the store's write lock."""
        with self._cond:
            self._check_open()
            if self._writer is None:
                self._writer = self.connect()
            return self._writer

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """Borrow a reader connection for the ``with`` block."""
        conn = self.borrow()
        try:
            yield conn
        finally:
            self.give_back(conn)

    def give_back(self, conn: sqlite3.Connection) -> None:
        """Return a connection :meth:`borrow` lent (closed if the pool was closed)."""
        with self._cond:
            if self._closed:
                self._made -= 1
                conn.close()
            else:
                self._idle.append(conn)
                self._cond.notify()

    def borrow(self) -> sqlite3.Connection:
        """A reader connection, lent until :meth:`give_back` (:meth:`reader` pairs the
        two; a caller on a hot path calls them itself, sparing a generator)."""
        deadline = None  # taken only when the thread has to wait
        with self._cond:
            while True:
                self._check_open()
                if self._idle:
                    return self._idle.pop()
                if self._made < self.max_readers:
                    self._made += 1  # reserved; made outside the lock
                    break
                if deadline is None:
                    deadline = time.monotonic() + self.busy_timeout_s
                left = deadline - time.monotonic()
                if (left <= 0 or not self._cond.wait(left)) and not self._idle and (
                        self._made >= self.max_readers):
                    raise LockBusy(
                            f"state database {self.path} is busy: all {self.max_readers} "
                            f"reader connections stayed lent for {self.busy_timeout_s}s")
        try:
            return self.connect()
        except BaseException:
            with self._cond:
                self._made -= 1
                self._cond.notify()
            raise

    def open_connections(self) -> int:
        """How many connections exist now (the writer and the readers)."""
        with self._cond:
            return self._made + (self._writer is not None)

    def close(self) -> None:
        """Close every idle connection now, and lent ones when they are given back."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._made -= len(idle)
            writer, self._writer = self._writer, None
            self._cond.notify_all()
        for conn in idle:
            conn.close()
        if writer is not None:
            writer.close()
