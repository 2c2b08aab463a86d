"""Tokens and the audit log on SQLite, in the shared local database."""

from __future__ import annotations

from datetime import datetime

from shared.adapters.sqlite_db import Database, decode_cursor, encode_cursor
from shared.domain.access import AuditEntry, TokenRecord
from shared.ports import Page

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    workspace TEXT,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_workspace ON audit (workspace, seq);
"""


class SqliteTokenStore:
    """Tokens by id (a prefix of their hash); the record holds the whole hash to compare."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection = database.connection
        self._connection().executescript(_SCHEMA)

    def check(self) -> None:
        self._connection().execute("SELECT 1 FROM tokens LIMIT 1").fetchall()

    def add(self, token: TokenRecord) -> None:
        self._connection().execute("INSERT INTO tokens (id, workspace, record) VALUES (?, ?, ?)",
                                   (token.id, token.workspace, token.model_dump_json()))

    def get(self, token_id: str) -> TokenRecord | None:
        row = self._connection().execute("SELECT record FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return None if row is None else TokenRecord.model_validate_json(row[0])

    def list_tokens(self, workspace: str | None) -> list[TokenRecord]:
        query, params = ("SELECT record FROM tokens ORDER BY rowid", ()) if workspace is None else (
            "SELECT record FROM tokens WHERE workspace = ? ORDER BY rowid", (workspace,))
        return [TokenRecord.model_validate_json(row[0]) for row in self._connection().execute(query, params)]

    def revoke(self, token_id: str, at: datetime) -> TokenRecord | None:
        with self.database.transaction() as db:
            row = db.execute("SELECT record FROM tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                return None
            token = TokenRecord.model_validate_json(row[0])
            if token.revoked_at is None:
                token = token.model_copy(update={"revoked_at": at})
                db.execute("UPDATE tokens SET record = ? WHERE id = ?", (token.model_dump_json(), token_id))
            return token


class SqliteAuditLog:
    """Audit entries in insertion order; pages go newest first, the cursor is the last `seq` seen."""

    def __init__(self, database: Database) -> None:
        self._connection = database.connection
        self._connection().executescript(_SCHEMA)

    def check(self) -> None:
        self._connection().execute("SELECT 1 FROM audit LIMIT 1").fetchall()

    def append(self, entry: AuditEntry) -> None:
        self._connection().execute("INSERT INTO audit (workspace, record) VALUES (?, ?)",
                                   (entry.workspace, entry.model_dump_json()))

    def entries(self, workspace: str, *, top: int, cursor: str | None) -> Page[AuditEntry]:
        if top < 1:
            raise ValueError(f"a page holds at least one item, not {top}")
        before = _seq(decode_cursor(cursor, 1)[0]) if cursor else 2**62
        rows = self._connection().execute(
            "SELECT seq, record FROM audit WHERE workspace = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (workspace, before, top + 1)).fetchall()
        items = [AuditEntry.model_validate_json(row[1]) for row in rows[:top]]
        return Page(items, encode_cursor([str(rows[top - 1][0])]) if len(rows) > top else None)


def _seq(text: str) -> int:
    if not text.isdigit():
        raise ValueError("not a cursor this store handed out")
    return int(text)
