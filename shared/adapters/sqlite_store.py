"""The environment store on SQLite: the embedded default for a developer's machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from shared.adapters.sqlite_db import Database
from shared.domain.records import Container, EnvironmentRecord, JobRecord, with_mutable
from shared.ports import Page

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
CREATE INDEX IF NOT EXISTS environments_by_hash
    ON environments (workspace, json_extract(record, '$.description.hash'));
CREATE TABLE IF NOT EXISTS jobs (
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (workspace, id)
);
"""

# Per name: its newest version, the integer counter (as insert_next computes it) and whether all are archived.
_CONTAINERS = (
    "SELECT name, (SELECT version FROM environments AS n WHERE n.workspace = e.workspace AND n.name = e.name "
    "ORDER BY seq DESC LIMIT 1), MAX(CASE WHEN version <> '' AND version NOT GLOB '*[^0-9]*' "
    "THEN CAST(version AS INTEGER) END), MIN(archived) FROM environments AS e WHERE workspace = ? AND {where} "
    "GROUP BY name {having} ORDER BY name LIMIT ?")
_INSERT = ("INSERT INTO environments (workspace, name, version, anonymous, archived, record) "
           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, name, version) DO NOTHING")


class SqliteStore:
    """Environment versions and jobs in SQLite; `seq` is the creation order, cursors are a name or a `seq`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection = database.connection
        self._connection().executescript(_SCHEMA)

    def check(self) -> None:
        self._connection().execute("SELECT 1").fetchone()

    def insert(self, record: EnvironmentRecord) -> bool:
        # The integer counter is the highest all-digit version stored, so an explicit "7" raises it by itself.
        return self._connection().execute(_INSERT, _row(record)).rowcount == 1

    def insert_next(self, record: EnvironmentRecord) -> EnvironmentRecord:
        with self.database.transaction() as db:  # BEGIN IMMEDIATE: no other writer between MAX and INSERT
            row = db.execute(
                "SELECT MAX(CAST(version AS INTEGER)) FROM environments WHERE workspace = ? AND name = ? "
                "AND version <> '' AND version NOT GLOB '*[^0-9]*'",
                (record.workspace, record.name),
            ).fetchone()
            stored = record.model_copy(update={"version": str(int(row[0] or 0) + 1)})
            db.execute(_INSERT, _row(stored))
        return stored

    def get(self, workspace: str, name: str, version: str) -> EnvironmentRecord | None:
        row = self._connection().execute(
            "SELECT record FROM environments WHERE workspace = ? AND name = ? AND version = ?",
            (workspace, name, version),
        ).fetchone()
        return None if row is None else EnvironmentRecord.model_validate_json(row[0])

    def latest(self, workspace: str, name: str) -> EnvironmentRecord | None:
        row = self._connection().execute(
            "SELECT record FROM environments WHERE workspace = ? AND name = ? AND archived = 0 "
            "ORDER BY seq DESC LIMIT 1",
            (workspace, name),
        ).fetchone()
        return None if row is None else EnvironmentRecord.model_validate_json(row[0])

    def list_latest(self, workspace: str, *, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        rows = self._connection().execute(
            "SELECT name, record FROM environments AS e WHERE workspace = ? AND anonymous = 0 AND archived = 0 "
            "AND name > ? AND seq = (SELECT MAX(seq) FROM environments WHERE workspace = e.workspace "
            "AND name = e.name AND archived = 0) ORDER BY name LIMIT ?",
            (workspace, cursor or "", top + 1),  # one more than asked tells whether another page follows
        ).fetchall()
        page = [EnvironmentRecord.model_validate_json(row[1]) for row in rows[:top]]
        return Page(page, rows[top - 1][0] if len(rows) > top else None)

    def history(self, workspace: str, name: str, *, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        before = 2**62 if cursor is None else int(cursor)  # ValueError for a cursor this store never made
        rows = self._connection().execute(
            "SELECT seq, record FROM environments WHERE workspace = ? AND name = ? AND seq < ? "
            "ORDER BY seq DESC LIMIT ?",
            (workspace, name, before, top + 1),
        ).fetchall()
        page = [EnvironmentRecord.model_validate_json(row[1]) for row in rows[:top]]
        return Page(page, str(rows[top - 1][0]) if len(rows) > top else None)

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

    def update_version(self, record: EnvironmentRecord) -> EnvironmentRecord | None:
        with self.database.transaction() as db:
            stored = self.get(record.workspace, record.name, record.version)
            if stored is not None:
                stored = with_mutable(stored, record)
                db.execute(
                    "UPDATE environments SET archived = ?, record = ? WHERE workspace = ? AND name = ? AND version = ?",
                    (int(stored.archived), stored.model_dump_json(), record.workspace, record.name, record.version),
                )
        return stored

    def container(self, workspace: str, name: str) -> Container | None:
        row = self._connection().execute(_CONTAINERS.format(where="name = ?", having=""),
                                         (workspace, name, 1)).fetchone()
        return None if row is None else _container(workspace, row)

    def containers(self, workspace: str, *, archived: bool | None, top: int,
                   cursor: str | None) -> Page[Container]:
        having = "" if archived is None else f"HAVING MIN(archived) = {int(archived)}"
        rows = self._connection().execute(_CONTAINERS.format(where="name > ? AND anonymous = 0", having=having),
                                          (workspace, cursor or "", top + 1)).fetchall()
        page = [_container(workspace, row) for row in rows[:top]]
        return Page(page, rows[top - 1][0] if len(rows) > top else None)

    def insert_job(self, job: JobRecord) -> bool:
        cursor = self._connection().execute(
            "INSERT INTO jobs (workspace, id, record) VALUES (?, ?, ?) ON CONFLICT (workspace, id) DO NOTHING",
            (job.workspace, job.id, job.model_dump_json()),
        )
        return cursor.rowcount == 1

    def has_hash(self, workspace: str, hash_hex: str) -> bool:
        return self._connection().execute(
            "SELECT 1 FROM environments WHERE workspace = ? "
            "AND json_extract(record, '$.description.hash') = ? LIMIT 1", (workspace, hash_hex)).fetchone() is not None

    def each_version(self) -> Iterator[EnvironmentRecord]:
        cursor = self._connection().execute("SELECT record FROM environments ORDER BY seq")
        while rows := cursor.fetchmany(500):
            yield from (EnvironmentRecord.model_validate_json(row[0]) for row in rows)

    def get_job(self, workspace: str, job_id: str) -> JobRecord | None:
        row = self._connection().execute(
            "SELECT record FROM jobs WHERE workspace = ? AND id = ?", (workspace, job_id)
        ).fetchone()
        return None if row is None else JobRecord.model_validate_json(row[0])

    def update_job(self, workspace: str, job_id: str,
                   change: Callable[[JobRecord], JobRecord]) -> JobRecord | None:
        with self.database.transaction() as db:  # the write lock first: no other writer between read and write
            row = db.execute("SELECT record FROM jobs WHERE workspace = ? AND id = ?", (workspace, job_id)).fetchone()
            if row is None:
                return None
            job = change(JobRecord.model_validate_json(row[0]))
            db.execute("UPDATE jobs SET record = ? WHERE workspace = ? AND id = ?",
                       (job.model_dump_json(), workspace, job_id))
        return job


def _container(workspace: str, row: tuple[str, str, int | None, int]) -> Container:
    name, newest, counter, archived = row
    return Container(workspace=workspace, name=name, latest_version=newest, next_version=str((counter or 0) + 1),
                     archived=bool(archived))


def _row(record: EnvironmentRecord) -> tuple[str, str, str, int, int, str]:
    return (record.workspace, record.name, record.version, int(record.anonymous), int(record.archived),
            record.model_dump_json())
