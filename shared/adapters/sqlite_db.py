"""One SQLite file shared by the local adapters: a connection per thread, WAL, and a transaction helper."""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.domain.errors import StoreUnavailable

# SQLite's primary result codes that mean "not now" rather than "never": another writer held the lock past the
# busy timeout (BUSY, LOCKED), or the disk failed, filled up or went read-only (IOERR, FULL, READONLY, CANTOPEN).
_OUTAGES = {5: "the database is locked by another writer", 6: "a table is locked", 8: "the database is read-only",
            10: "a disk I/O error", 13: "the disk is full", 14: "the database file cannot be opened"}


class _Connection(sqlite3.Connection):
    """A connection whose outages raise StoreUnavailable (a 503 with Retry-After), as the Azure stores' do; a
    failed statement has written nothing (SQLite rolls it back), so the caller may simply retry."""

    def execute(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args)
        except sqlite3.OperationalError as error:
            raise _outage(error) from error

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executemany(*args)
        except sqlite3.OperationalError as error:
            raise _outage(error) from error

    def executescript(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executescript(*args)
        except sqlite3.OperationalError as error:
            raise _outage(error) from error


def _outage(error: sqlite3.OperationalError) -> Exception:
    what = _OUTAGES.get(getattr(error, "sqlite_errorcode", 0) & 0xFF)
    return error if what is None else StoreUnavailable(f"SQLite did not answer: {what} ({error})", where="store",
                                                       retry_after=1)


class Database:
    """Connections per thread so that threads never share one; WAL so readers never wait for the writer."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, in autocommit mode (transactions are explicit)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, factory=_Connection)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: the write lock up front, so read-then-write steps are atomic."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # a failed COMMIT or statement may have ended it already
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def encode_cursor(key: tuple[str, ...] | list[str]) -> str:
    """The last listed key of a keyset page as an opaque, URL-safe cursor (every SQLite store's)."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The key inside a cursor; ValueError for one no store handed out (the use cases answer 422)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError("not a cursor this store handed out") from error
    if not isinstance(key, list) or len(key) != size or not all(isinstance(part, str) for part in key):
        raise ValueError("not a cursor this store handed out")
    return key
