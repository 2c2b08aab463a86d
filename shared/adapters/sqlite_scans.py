"""Scans, findings and remembered tag digests in SQLite: optimistic writes are single `UPDATE ... WHERE revision = ?`
statements, so the database itself decides which of two writers of one revision wins."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.adapters.sqlite_db import Database, decode_cursor, encode_cursor
from shared.domain.errors import NotFound, StaleRecord
from shared.domain.scans import Finding, FindingStatus, Scan
from shared.ports import Page

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    revision INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scans_newest ON scans (started_at, id);
CREATE TABLE IF NOT EXISTS findings (
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    environment_name TEXT NOT NULL,
    environment_version TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    revision INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE INDEX IF NOT EXISTS findings_by_environment
    ON findings (workspace, environment_name, environment_version, type, id);
CREATE TABLE IF NOT EXISTS tag_digests (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repository, tag)
) WITHOUT ROWID;
"""

_FINDING_ORDER = "ORDER BY environment_name, environment_version, type, id"


class SqliteScanStore:
    """The ScanStore port on the local SQLite file. Scans are listed by (started_at, id) descending and findings
    by (environment name, version, type, id); cursors are the last listed key, so a page never repeats or skips
    a row that was there before the listing began."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.connection().executescript(_SCHEMA)

    def check(self) -> None:
        self.database.connection().execute("SELECT 1").fetchone()

    def create_scan(self, scan: Scan) -> None:
        created = self.database.connection().execute(
            "INSERT INTO scans (id, started_at, revision, record) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (scan.id, _stamp(scan.started_at), scan.revision, scan.model_dump_json()),
        ).rowcount
        if created != 1:
            raise StaleRecord(f"scan {scan.id} exists already")

    def get_scan(self, scan_id: str) -> Scan | None:
        row = self.database.connection().execute("SELECT record FROM scans WHERE id = ?", (scan_id,)).fetchone()
        return None if row is None else Scan.model_validate_json(row[0])

    def list_scans(self, *, top: int, cursor: str | None) -> Page[Scan]:
        _positive(top)
        db = self.database.connection()
        if cursor is None:
            rows = db.execute("SELECT started_at, id, record FROM scans ORDER BY started_at DESC, id DESC LIMIT ?",
                              (top + 1,)).fetchall()
        else:
            after = decode_cursor(cursor, 2)
            rows = db.execute("SELECT started_at, id, record FROM scans WHERE (started_at, id) < (?, ?) "
                              "ORDER BY started_at DESC, id DESC LIMIT ?", (*after, top + 1)).fetchall()
        page = [Scan.model_validate_json(row[2]) for row in rows[:top]]
        return Page(page, encode_cursor(rows[top - 1][:2]) if len(rows) > top else None)

    def update_scan(self, scan: Scan) -> Scan:
        saved = scan.model_copy(update={"revision": scan.revision + 1})
        db = self.database.connection()
        changed = db.execute("UPDATE scans SET started_at = ?, revision = ?, record = ? WHERE id = ? AND revision = ?",
                             (_stamp(saved.started_at), saved.revision, saved.model_dump_json(), scan.id,
                              scan.revision)).rowcount
        if changed != 1:
            row = db.execute("SELECT revision FROM scans WHERE id = ?", (scan.id,)).fetchone()
            if row is None:
                raise NotFound(f"no scan {scan.id}")
            raise StaleRecord(f"scan {scan.id} is at revision {row[0]}, not {scan.revision}")
        return saved

    def get_finding(self, workspace: str, finding_id: str) -> Finding | None:
        row = self.database.connection().execute(
            "SELECT record FROM findings WHERE workspace = ? AND id = ?", (workspace, finding_id)
        ).fetchone()
        return None if row is None else Finding.model_validate_json(row[0])

    def put_finding(self, finding: Finding) -> Finding:
        saved = finding.model_copy(update={"revision": finding.revision + 1})
        db = self.database.connection()
        if finding.revision == 0:
            written = db.execute(
                "INSERT INTO findings (workspace, id, environment_name, environment_version, type, status, revision, "
                "record) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, id) DO NOTHING",
                (saved.workspace, saved.id, saved.environment_name, saved.environment_version, saved.type.value,
                 saved.status.value, saved.revision, saved.model_dump_json()),
            ).rowcount
        else:
            written = db.execute(
                "UPDATE findings SET environment_name = ?, environment_version = ?, type = ?, status = ?, "
                "revision = ?, record = ? WHERE workspace = ? AND id = ? AND revision = ?",
                (saved.environment_name, saved.environment_version, saved.type.value, saved.status.value,
                 saved.revision, saved.model_dump_json(), saved.workspace, saved.id, finding.revision),
            ).rowcount
        if written != 1:
            raise StaleRecord(f"finding {finding.id} is not at revision {finding.revision}")
        return saved

    def list_findings(self, workspace: str, *, top: int, cursor: str | None,
                      statuses: frozenset[FindingStatus] | None = None) -> Page[Finding]:
        _positive(top)
        where, params = ["workspace = ?"], [workspace]
        if cursor is not None:
            where.append("(environment_name, environment_version, type, id) > (?, ?, ?, ?)")
            params.extend(decode_cursor(cursor, 4))
        if statuses is not None:
            where.append(f"status IN ({', '.join('?' * len(statuses))})" if statuses else "0")
            params.extend(sorted(status.value for status in statuses))
        rows = self.database.connection().execute(
            "SELECT environment_name, environment_version, type, id, record FROM findings "  # noqa: S608 -- fixed text
            f"WHERE {' AND '.join(where)} {_FINDING_ORDER} LIMIT ?",
            (*params, top + 1),
        ).fetchall()
        page = [Finding.model_validate_json(row[4]) for row in rows[:top]]
        return Page(page, encode_cursor(rows[top - 1][:4]) if len(rows) > top else None)

    def findings_of(self, workspace: str, name: str, version: str) -> list[Finding]:
        rows = self.database.connection().execute(
            "SELECT record FROM findings WHERE workspace = ? AND environment_name = ? AND environment_version = ? "
            "ORDER BY type, id",
            (workspace, name, version),
        ).fetchall()
        return [Finding.model_validate_json(row[0]) for row in rows]

    def known_digests(self, repository: str) -> dict[str, str]:
        rows = self.database.connection().execute(
            "SELECT tag, digest FROM tag_digests WHERE repository = ?", (repository,)
        ).fetchall()
        return {tag: digest for tag, digest in rows}

    def remember_digests(self, repository: str, digests: dict[str, str]) -> None:
        if not digests:
            return
        with self.database.transaction() as db:
            db.executemany(
                "INSERT INTO tag_digests (repository, tag, digest) VALUES (?, ?, ?) "
                "ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest",
                [(repository, tag, digest) for tag, digest in digests.items()],
            )


def _positive(top: int) -> None:
    if top < 1:
        raise ValueError(f"a page holds at least one item, not {top}")


def _stamp(moment: datetime) -> str:
    """A fixed-width UTC time that sorts as text (a naive time is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
