"""Build records and logs in SQLite; an `active_builds` row per hash makes joining a running build atomic."""

from __future__ import annotations

from shared.adapters.sqlite_db import Database
from shared.domain.builds import BuildRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL
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


class SqliteBuildStore:
    """The BuildStore port on the local SQLite file."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.connection().executescript(_SCHEMA)

    def start_or_join(self, record: BuildRecord) -> tuple[BuildRecord, bool]:
        with self.database.transaction() as db:
            row = db.execute("SELECT build_id FROM active_builds WHERE hash = ?", (record.hash,)).fetchone()
            if row is not None:
                existing = self.get(row[0])
                if existing is not None:
                    return existing, False
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM builds").fetchone()[0]
            db.execute("INSERT INTO builds (id, hash, seq, record) VALUES (?, ?, ?, ?)",
                       (record.id, record.hash, seq, record.model_dump_json()))
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

    def update(self, record: BuildRecord) -> None:
        with self.database.transaction() as db:
            db.execute("UPDATE builds SET record = ? WHERE id = ?", (record.model_dump_json(), record.id))
            if record.status.finished:
                db.execute("DELETE FROM active_builds WHERE hash = ? AND build_id = ?", (record.hash, record.id))

    def request_cancel(self, build_id: str) -> BuildRecord | None:
        with self.database.transaction() as db:
            record = self.get(build_id)
            if record is None or record.status.finished:
                return record
            record = record.model_copy(update={"cancel_requested": True})
            db.execute("UPDATE builds SET record = ? WHERE id = ?", (record.model_dump_json(), build_id))
        return record

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
