"""Build records and logs in SQLite; an `active_builds` row per hash makes joining a running build atomic."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from shared.adapters.sqlite_db import Database
from shared.domain.builds import BuildRecord
from shared.domain.errors import NotFound, StaleRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS builds_by_hash ON builds (hash, seq);
CREATE TABLE IF NOT EXISTS active_builds (
    hash TEXT PRIMARY KEY,
    build_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS build_logs (
    build_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (build_id, line_no)
);
"""
# Files made before builds carried `updated_at` get the columns; their finished builds are marked from the JSON.
_ADDED_COLUMNS = {"finished": "INTEGER NOT NULL DEFAULT 0", "updated_at": "TEXT NOT NULL DEFAULT ''"}


class SqliteBuildStore:
    """The BuildStore port on the local SQLite file."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.connection().executescript(_SCHEMA)
        with database.transaction() as db:  # two processes starting at once must not both add a column
            _migrate(db)
            db.execute("CREATE INDEX IF NOT EXISTS builds_idle ON builds (finished, updated_at)")

    def check(self) -> None:
        self.database.connection().execute("SELECT 1").fetchone()

    def start_or_join(self, record: BuildRecord) -> tuple[BuildRecord, bool]:
        record = record.model_copy(update={"updated_at": datetime.now(UTC)})
        with self.database.transaction() as db:
            row = db.execute("SELECT build_id FROM active_builds WHERE hash = ?", (record.hash,)).fetchone()
            if row is not None:
                existing = self.get(row[0])
                if existing is not None and row[0] == record.id:
                    return existing, True  # a retry of the call that created it
                if existing is not None and not existing.status.finished:
                    return existing, False
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM builds").fetchone()[0]
            db.execute("INSERT INTO builds (id, hash, seq, record, finished, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (record.id, record.hash, seq, *_columns(record)))
            db.execute("INSERT OR REPLACE INTO active_builds (hash, build_id) VALUES (?, ?)", (record.hash, record.id))
        return record, True

    def get(self, build_id: str) -> BuildRecord | None:
        row = self.database.connection().execute("SELECT record FROM builds WHERE id = ?", (build_id,)).fetchone()
        return None if row is None else BuildRecord.model_validate_json(row[0])

    def latest_for_hash(self, hash_hex: str) -> BuildRecord | None:
        row = self.database.connection().execute(
            "SELECT record FROM builds WHERE hash = ? ORDER BY seq DESC LIMIT 1", (hash_hex,)
        ).fetchone()
        return None if row is None else BuildRecord.model_validate_json(row[0])

    def count_for_hash(self, hash_hex: str) -> int:
        row = self.database.connection().execute("SELECT COUNT(*) FROM builds WHERE hash = ?", (hash_hex,))
        return int(row.fetchone()[0])

    def update(self, record: BuildRecord) -> BuildRecord:
        with self.database.transaction() as db:
            stored = self.get(record.id)
            if stored is None:
                raise NotFound(f"no build {record.id}")
            if stored.revision != record.revision:
                raise StaleRecord(f"build {record.id} is at revision {stored.revision}, not {record.revision}")
            saved = record.model_copy(update={
                "revision": stored.revision + 1, "updated_at": datetime.now(UTC),
                "cancel_requested": record.cancel_requested or stored.cancel_requested,
            })
            self._save(db, saved)
            if saved.status.finished:
                db.execute("DELETE FROM active_builds WHERE hash = ? AND build_id = ?", (saved.hash, saved.id))
        return saved

    def request_cancel(self, build_id: str) -> BuildRecord | None:
        with self.database.transaction() as db:
            record = self.get(build_id)
            if record is None or record.status.finished or record.cancel_requested:
                return record
            record = record.model_copy(update={"cancel_requested": True, "revision": record.revision + 1,
                                               "updated_at": datetime.now(UTC)})
            self._save(db, record)
        return record

    def unfinished(self, *, idle_since: datetime) -> list[BuildRecord]:
        rows = self.database.connection().execute(
            "SELECT record FROM builds WHERE finished = 0 AND updated_at < ? ORDER BY updated_at",
            (_stamp(idle_since),),
        ).fetchall()
        return [BuildRecord.model_validate_json(row[0]) for row in rows]

    def append_log(self, build_id: str, lines: list[str]) -> None:
        if not lines:
            return
        with self.database.transaction() as db:
            start = db.execute("SELECT COALESCE(MAX(line_no), -1) + 1 FROM build_logs WHERE build_id = ?",
                               (build_id,)).fetchone()[0]
            db.executemany("INSERT INTO build_logs (build_id, line_no, line) VALUES (?, ?, ?)",
                           [(build_id, start + i, line) for i, line in enumerate(lines)])

    def read_log(self, build_id: str, offset: int) -> list[str]:
        rows = self.database.connection().execute(
            "SELECT line FROM build_logs WHERE build_id = ? AND line_no >= ? ORDER BY line_no", (build_id, offset)
        ).fetchall()
        return [row[0] for row in rows]

    @staticmethod
    def _save(db: sqlite3.Connection, record: BuildRecord) -> None:
        db.execute("UPDATE builds SET record = ?, finished = ?, updated_at = ? WHERE id = ?",
                   (*_columns(record), record.id))


def _migrate(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(builds)")}
    for column, declaration in _ADDED_COLUMNS.items():
        if column not in have:
            db.execute(f"ALTER TABLE builds ADD COLUMN {column} {declaration}")
    if "finished" not in have:
        db.execute("UPDATE builds SET finished = json_extract(record, '$.status') IN "
                   "('succeeded', 'failed', 'cancelled')")


def _columns(record: BuildRecord) -> tuple[str, int, str]:
    return record.model_dump_json(), int(record.status.finished), _stamp(record.updated_at or record.created_at)


def _stamp(moment: datetime) -> str:
    """A fixed-width UTC time that sorts as text (a naive time is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
