"""The deployment store on SQLite: one row per (workspace, name) in the shared local database."""

from __future__ import annotations

from collections.abc import Iterator

from shared.adapters.sqlite_db import Database, decode_cursor, encode_cursor
from shared.domain.scans import Deployment
from shared.ports import Page

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    needs_redeploy INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);
CREATE INDEX IF NOT EXISTS deployments_by_flag ON deployments (workspace, needs_redeploy, name);
"""
_EACH_BATCH = 100


class SqliteDeploymentStore:
    """Deployments in SQLite. Listings are keyset pages by name; the cursor is the last name, encoded."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection = database.connection
        self._connection().executescript(_SCHEMA)

    def check(self) -> None:
        self._connection().execute("SELECT 1 FROM deployments LIMIT 1").fetchall()

    def put(self, deployment: Deployment) -> Deployment:
        with self.database.transaction() as db:  # BEGIN IMMEDIATE: the created_at read and the write are one step
            row = db.execute("SELECT record FROM deployments WHERE workspace = ? AND name = ?",
                             (deployment.workspace, deployment.name)).fetchone()
            stored = deployment
            if row is not None:
                stored = deployment.model_copy(
                    update={"created_at": Deployment.model_validate_json(row[0]).created_at})
            db.execute(
                "INSERT INTO deployments (workspace, name, needs_redeploy, record) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (workspace, name) DO UPDATE SET needs_redeploy = excluded.needs_redeploy, "
                "record = excluded.record",
                (stored.workspace, stored.name, int(stored.needs_redeploy), stored.model_dump_json()),
            )
        return stored

    def get(self, workspace: str, name: str) -> Deployment | None:
        row = self._connection().execute(
            "SELECT record FROM deployments WHERE workspace = ? AND name = ?", (workspace, name)
        ).fetchone()
        return None if row is None else Deployment.model_validate_json(row[0])

    def list_deployments(self, workspace: str, *, top: int, cursor: str | None,
                         needs_redeploy: bool | None = None) -> Page[Deployment]:
        if top < 1:
            raise ValueError(f"a page holds at least one item, not {top}")
        after = "" if cursor is None else decode_cursor(cursor, 1)[0]
        flag = "" if needs_redeploy is None else " AND needs_redeploy = ?"
        params: tuple[object, ...] = (workspace, after, *(() if needs_redeploy is None else (int(needs_redeploy),)))
        rows = self._connection().execute(
            f"SELECT name, record FROM deployments WHERE workspace = ? AND name > ?{flag} "  # noqa: S608 -- fixed text
            "ORDER BY name LIMIT ?",
            (*params, top + 1),  # one more than asked tells whether another page follows
        ).fetchall()
        items = [Deployment.model_validate_json(row[1]) for row in rows[:top]]
        return Page(items, encode_cursor([rows[top - 1][0]]) if len(rows) > top else None)

    def delete(self, workspace: str, name: str) -> bool:
        return self._connection().execute(
            "DELETE FROM deployments WHERE workspace = ? AND name = ?", (workspace, name)
        ).rowcount == 1

    def each(self) -> Iterator[Deployment]:
        after: tuple[str, str] = ("", "")
        while True:  # in batches, so no read holds the database while the caller works on each deployment
            rows = self._connection().execute(
                "SELECT workspace, name, record FROM deployments WHERE (workspace, name) > (?, ?) "
                "ORDER BY workspace, name LIMIT ?",
                (*after, _EACH_BATCH),
            ).fetchall()
            for row in rows:
                yield Deployment.model_validate_json(row[2])
            if len(rows) < _EACH_BATCH:
                return
            after = (rows[-1][0], rows[-1][1])
