"""The environment store on SQLite: the embedded default for a developer's machine."""

from __future__ import annotations

from shared.adapters.sqlite_db import Database
from shared.domain.records import EnvironmentRecord, JobRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS environments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    anonymous INTEGER NOT NULL,
    archived INTEGER NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (workspace, name, version)
);
CREATE INDEX IF NOT EXISTS environments_by_name ON environments (workspace, name, archived, seq);
CREATE TABLE IF NOT EXISTS jobs (
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (workspace, id)
);
"""


class SqliteStore:
    """Environment versions and jobs in SQLite."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection = database.connection
        self._connection().executescript(_SCHEMA)

    def insert(self, record: EnvironmentRecord) -> bool:
        cursor = self._connection().execute(
            "INSERT INTO environments (workspace, name, version, anonymous, archived, record) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, name, version) DO NOTHING",
            (record.workspace, record.name, record.version, int(record.anonymous), int(record.archived),
             record.model_dump_json()),
        )
        return cursor.rowcount == 1

    def get(self, workspace: str, name: str, version: str) -> EnvironmentRecord | None:
        row = self._connection().execute(
            "SELECT record FROM environments WHERE workspace = ? AND name = ? AND version = ?",
            (workspace, name, version),
        ).fetchone()
        return None if row is None else EnvironmentRecord.model_validate_json(row[0])

    def highest_integer_version(self, workspace: str, name: str) -> int:
        row = self._connection().execute(
            "SELECT MAX(CAST(version AS INTEGER)) FROM environments WHERE workspace = ? AND name = ? "
            "AND version NOT GLOB '*[^0-9]*'",
            (workspace, name),
        ).fetchone()
        return int(row[0] or 0)

    def latest(self, workspace: str, name: str) -> EnvironmentRecord | None:
        row = self._connection().execute(
            "SELECT record FROM environments WHERE workspace = ? AND name = ? AND archived = 0 "
            "ORDER BY seq DESC LIMIT 1",
            (workspace, name),
        ).fetchone()
        return None if row is None else EnvironmentRecord.model_validate_json(row[0])

    def list_latest(self, workspace: str, *, top: int, after: str | None) -> list[EnvironmentRecord]:
        rows = self._connection().execute(
            "SELECT record FROM environments AS e WHERE workspace = ? AND anonymous = 0 AND archived = 0 "
            "AND name > ? AND seq = (SELECT MAX(seq) FROM environments WHERE workspace = e.workspace "
            "AND name = e.name AND archived = 0) ORDER BY name LIMIT ?",
            (workspace, after or "", top),
        ).fetchall()
        return [EnvironmentRecord.model_validate_json(row[0]) for row in rows]

    def history(
        self, workspace: str, name: str, *, top: int, before: int | None
    ) -> list[tuple[int, EnvironmentRecord]]:
        rows = self._connection().execute(
            "SELECT seq, record FROM environments WHERE workspace = ? AND name = ? AND seq < ? "
            "ORDER BY seq DESC LIMIT ?",
            (workspace, name, before if before is not None else 2**62, top),
        ).fetchall()
        return [(row[0], EnvironmentRecord.model_validate_json(row[1])) for row in rows]

    def set_archived(self, workspace: str, name: str, version: str, archived: bool) -> EnvironmentRecord | None:
        with self.database.transaction() as db:
            record = self.get(workspace, name, version)
            if record is not None:
                record = record.model_copy(update={"archived": archived})
                db.execute(
                    "UPDATE environments SET archived = ?, record = ? WHERE workspace = ? AND name = ? AND version = ?",
                    (int(archived), record.model_dump_json(), workspace, name, version),
                )
        return record

    def insert_job(self, job: JobRecord) -> bool:
        cursor = self._connection().execute(
            "INSERT INTO jobs (workspace, id, record) VALUES (?, ?, ?) ON CONFLICT (workspace, id) DO NOTHING",
            (job.workspace, job.id, job.model_dump_json()),
        )
        return cursor.rowcount == 1

    def get_job(self, workspace: str, job_id: str) -> JobRecord | None:
        row = self._connection().execute(
            "SELECT record FROM jobs WHERE workspace = ? AND id = ?", (workspace, job_id)
        ).fetchone()
        return None if row is None else JobRecord.model_validate_json(row[0])
