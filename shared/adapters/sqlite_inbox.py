"""The inbox on SQLite, in the shared local database: one row per (workspace, correlation id), and the replies owed
when builds end."""

from __future__ import annotations

from typing import Any

from shared.adapters.sqlite_db import Database
from shared.domain.inbox import BuildWaiter, InboxEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_entries (
    workspace TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (workspace, correlation_id)
);
CREATE TABLE IF NOT EXISTS inbox_waiters (
    build_id TEXT NOT NULL,
    workspace TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    waiter TEXT NOT NULL,
    PRIMARY KEY (build_id, workspace, correlation_id)
);
"""
_ENTRY = "SELECT entry FROM inbox_entries WHERE workspace = ? AND correlation_id = ?"


class SqliteInboxStore:
    """The InboxStore port: the entry and the waiter as JSON, keyed by their identities; every read-then-write
    step runs in one BEGIN IMMEDIATE transaction."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection = database.connection
        self._connection().executescript(_SCHEMA)

    def check(self) -> None:
        self._connection().execute("SELECT 1 FROM inbox_entries LIMIT 1").fetchall()

    def claim(self, entry: InboxEntry) -> InboxEntry:
        with self.database.transaction() as db:
            db.execute("INSERT INTO inbox_entries (workspace, correlation_id, entry) VALUES (?, ?, ?) "
                       "ON CONFLICT DO NOTHING", (entry.workspace, entry.correlation_id, entry.model_dump_json()))
            row = db.execute(_ENTRY, (entry.workspace, entry.correlation_id)).fetchone()
        return InboxEntry.model_validate_json(row[0])

    def finish(self, workspace: str, correlation_id: str, reply: dict[str, Any],
               build_id: str | None = None) -> InboxEntry | None:
        with self.database.transaction() as db:
            row = db.execute(_ENTRY, (workspace, correlation_id)).fetchone()
            if row is None:
                return None
            entry = InboxEntry.model_validate_json(row[0])
            if entry.reply is None:  # the first reply stays
                entry = entry.model_copy(update={"reply": reply, "build_id": build_id})
                db.execute("UPDATE inbox_entries SET entry = ? WHERE workspace = ? AND correlation_id = ?",
                           (entry.model_dump_json(), workspace, correlation_id))
            return entry

    def get_entry(self, workspace: str, correlation_id: str) -> InboxEntry | None:
        row = self._connection().execute(_ENTRY, (workspace, correlation_id)).fetchone()
        return None if row is None else InboxEntry.model_validate_json(row[0])

    def wait_for(self, waiter: BuildWaiter) -> None:
        self._connection().execute(
            "INSERT INTO inbox_waiters (build_id, workspace, correlation_id, waiter) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING", (waiter.build_id, waiter.workspace, waiter.correlation_id,
                                       waiter.model_dump_json()))

    def take_waiters(self, build_id: str) -> list[BuildWaiter]:
        with self.database.transaction() as db:
            rows = db.execute("SELECT waiter FROM inbox_waiters WHERE build_id = ? ORDER BY rowid",
                              (build_id,)).fetchall()
            db.execute("DELETE FROM inbox_waiters WHERE build_id = ?", (build_id,))
        return [BuildWaiter.model_validate_json(row[0]) for row in rows]

    def pending_waiters(self, top: int) -> list[BuildWaiter]:
        rows = self._connection().execute("SELECT waiter FROM inbox_waiters ORDER BY rowid LIMIT ?",
                                          (top,)).fetchall()
        return [BuildWaiter.model_validate_json(row[0]) for row in rows]

    def take_waiter(self, build_id: str, workspace: str, correlation_id: str) -> BuildWaiter | None:
        with self.database.transaction() as db:
            row = db.execute("SELECT waiter FROM inbox_waiters WHERE build_id = ? AND workspace = ? "
                             "AND correlation_id = ?", (build_id, workspace, correlation_id)).fetchone()
            if row is None:
                return None
            deleted = db.execute("DELETE FROM inbox_waiters WHERE build_id = ? AND workspace = ? "
                                 "AND correlation_id = ?", (build_id, workspace, correlation_id)).rowcount
        return BuildWaiter.model_validate_json(row[0]) if deleted == 1 else None
