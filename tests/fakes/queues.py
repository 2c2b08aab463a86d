"""An in-memory queue with Azure Storage queue semantics (visibility, dequeue counts, fresh receipts, poison)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from shared.ports import QueueMessage


@dataclass
class _Stored:
    id: str
    body: str
    visible_at: float
    order: int
    dequeue_count: int = 0
    receipt: str | None = None


class FakeQueue:
    """A QueueSender and QueueConsumer in memory. Like Azure Storage, `hide` issues a new receipt and voids
    the old one, so code that keeps using a stale message is caught. Set `down` to make every call fail as
    an unreachable service would; pass `clock` to move time without sleeping."""

    def __init__(self, name: str = "fake", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.clock = clock
        self.down = False
        self.sent: list[tuple[str, float]] = []  # every (body, delay) sent, for assertions
        self._messages: dict[str, _Stored] = {}
        self._poison: list[tuple[str, str, int]] = []
        self._order = 0
        self._lock = threading.Lock()

    def _answer(self) -> None:
        if self.down:
            raise ConnectionError(f"the queue '{self.name}' does not answer")

    def check(self) -> None:
        self._answer()

    def send(self, body: str, *, delay: float = 0.0) -> None:
        self._answer()
        with self._lock:
            self._order += 1
            message_id = str(uuid.uuid4())
            self._messages[message_id] = _Stored(message_id, body, self.clock() + max(0.0, delay), self._order)
            self.sent.append((body, delay))

    def receive(self, visibility_timeout: float) -> QueueMessage | None:
        self._answer()
        with self._lock:
            now = self.clock()
            visible = [m for m in self._messages.values() if m.visible_at <= now]
            if not visible:
                return None
            stored = min(visible, key=lambda m: (m.visible_at, m.order))
            stored.dequeue_count += 1
            stored.visible_at = now + visibility_timeout
            stored.receipt = str(uuid.uuid4())
            return QueueMessage(stored.id, stored.receipt, stored.body, stored.dequeue_count)

    def _held(self, message: QueueMessage) -> _Stored | None:
        stored = self._messages.get(message.id)
        return stored if stored is not None and stored.receipt == message.receipt else None

    def delete(self, message: QueueMessage) -> None:
        self._answer()
        with self._lock:
            if self._held(message) is not None:  # a stale receipt deletes nothing, as in the real adapters
                del self._messages[message.id]

    def hide(self, message: QueueMessage, seconds: float) -> QueueMessage:
        self._answer()
        with self._lock:
            stored = self._held(message)
            if stored is None:
                raise LookupError(f"message {message.id} is gone or its receipt is stale")
            stored.visible_at = self.clock() + seconds
            stored.receipt = str(uuid.uuid4())
            return QueueMessage(stored.id, stored.receipt, stored.body, stored.dequeue_count)

    def poison(self, message: QueueMessage, reason: str) -> None:
        self._answer()
        with self._lock:
            if self._held(message) is not None:
                del self._messages[message.id]
                self._poison.append((message.body, reason, message.dequeue_count))

    def depth(self) -> int:
        """Messages waiting or in flight."""
        with self._lock:
            return len(self._messages)

    def poisoned(self) -> list[tuple[str, str]]:
        """(body, reason) of every poisoned message, oldest first."""
        with self._lock:
            return [(body, reason) for body, reason, _ in self._poison]
