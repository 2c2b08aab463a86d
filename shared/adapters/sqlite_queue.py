"""A durable queue on SQLite with Azure Storage queue semantics: visibility timeouts, dequeue counts, poison."""

from __future__ import annotations

import time
import uuid

from shared.adapters.sqlite_db import Database
from shared.ports import QueueMessage as Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at REAL NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    inserted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue_messages (queue, visible_at);
CREATE TABLE IF NOT EXISTS poison_messages (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    dequeue_count INTEGER NOT NULL,
    reason TEXT NOT NULL,
    poisoned_at REAL NOT NULL
);
"""


class SqliteQueue:
    """One named queue, a QueueSender and a QueueConsumer. A receiver that dies simply stops renewing: the
    message reappears after its visibility timeout and is handed out again, with its dequeue count raised.
    Poisoned messages go to a table of their own, the local `<queue>-poison`."""

    def __init__(self, database: Database, name: str) -> None:
        self.database = database
        self.name = name
        database.connection().executescript(_SCHEMA)

    def check(self) -> None:
        self.database.connection().execute("SELECT 1").fetchone()

    def send(self, body: str, *, delay: float = 0.0) -> None:
        now = time.time()
        self.database.connection().execute(
            "INSERT INTO queue_messages (id, queue, body, visible_at, inserted_at) VALUES (?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), self.name, body, now + max(0.0, delay), now),
        )

    def receive(self, visibility_timeout: float) -> Message | None:
        now = time.time()
        with self.database.transaction() as db:
            row = db.execute(
                "SELECT id, body, dequeue_count FROM queue_messages WHERE queue = ? AND visible_at <= ? "
                "ORDER BY visible_at, inserted_at LIMIT 1",
                (self.name, now),
            ).fetchone()
            if row is None:
                return None
            receipt = str(uuid.uuid4())
            db.execute("UPDATE queue_messages SET visible_at = ?, dequeue_count = dequeue_count + 1, receipt = ? "
                       "WHERE id = ?", (now + visibility_timeout, receipt, row[0]))
        return Message(id=row[0], receipt=receipt, body=row[1], dequeue_count=row[2] + 1)

    def delete(self, message: Message) -> None:
        self.database.connection().execute(
            "DELETE FROM queue_messages WHERE id = ? AND receipt = ?", (message.id, message.receipt)
        )

    def hide(self, message: Message, seconds: float) -> Message:
        # The receipt stays valid here (Azure Storage would issue a new one); callers use the one returned.
        self.database.connection().execute(
            "UPDATE queue_messages SET visible_at = ? WHERE id = ? AND receipt = ?",
            (time.time() + seconds, message.id, message.receipt),
        )
        return message

    def poison(self, message: Message, reason: str) -> None:
        with self.database.transaction() as db:
            deleted = db.execute("DELETE FROM queue_messages WHERE id = ? AND receipt = ?",
                                 (message.id, message.receipt)).rowcount
            if deleted:
                db.execute("INSERT OR REPLACE INTO poison_messages VALUES (?, ?, ?, ?, ?, ?)",
                           (message.id, self.name, message.body, message.dequeue_count, reason, time.time()))

    def depth(self) -> int:
        """Messages waiting or in flight."""
        row = self.database.connection().execute("SELECT COUNT(*) FROM queue_messages WHERE queue = ?", (self.name,))
        return int(row.fetchone()[0])

    def poisoned(self) -> list[tuple[str, str]]:
        """(body, reason) of every poisoned message."""
        rows = self.database.connection().execute(
            "SELECT body, reason FROM poison_messages WHERE queue = ? ORDER BY poisoned_at", (self.name,)
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def take_poisoned(self) -> tuple[str, str, str] | None:
        """Remove and return (id, body, reason) of the oldest poisoned message, or None: a reader of the local
        `<queue>-poison` takes it, as from the Storage poison queue."""
        with self.database.transaction() as db:
            row = db.execute("SELECT id, body, reason FROM poison_messages WHERE queue = ? "
                             "ORDER BY poisoned_at LIMIT 1", (self.name,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM poison_messages WHERE id = ?", (row[0],))
        return str(row[0]), str(row[1]), str(row[2])
