"""An in-memory InboxStore with the port's semantics; one lock stands in for the database's atomic writes."""

from __future__ import annotations

from typing import Any

from shared.domain.inbox import BuildWaiter, InboxEntry
from tests.fakes.stores import _Answering


class FakeInboxStore(_Answering):
    """Entries by (workspace, correlation id); waiters by build, in the order they were stored."""

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[tuple[str, str], InboxEntry] = {}
        self._waiters: dict[str, dict[tuple[str, str], BuildWaiter]] = {}

    def claim(self, entry: InboxEntry) -> InboxEntry:
        self._answer()
        with self._lock:
            return self._entries.setdefault((entry.workspace, entry.correlation_id), entry)

    def finish(self, workspace: str, correlation_id: str, reply: dict[str, Any],
               build_id: str | None = None) -> InboxEntry | None:
        self._answer()
        with self._lock:
            entry = self._entries.get((workspace, correlation_id))
            if entry is None or entry.reply is not None:  # the first reply stays
                return entry
            entry = entry.model_copy(update={"reply": reply, "build_id": build_id})
            self._entries[(workspace, correlation_id)] = entry
            return entry

    def get_entry(self, workspace: str, correlation_id: str) -> InboxEntry | None:
        self._answer()
        with self._lock:
            return self._entries.get((workspace, correlation_id))

    def wait_for(self, waiter: BuildWaiter) -> None:
        self._answer()
        with self._lock:
            self._waiters.setdefault(waiter.build_id, {}).setdefault((waiter.workspace, waiter.correlation_id),
                                                                     waiter)

    def take_waiters(self, build_id: str) -> list[BuildWaiter]:
        self._answer()
        with self._lock:
            return list(self._waiters.pop(build_id, {}).values())

    def pending_waiters(self, top: int) -> list[BuildWaiter]:
        self._answer()
        with self._lock:
            return [w for waiters in self._waiters.values() for w in waiters.values()][:top]

    def take_waiter(self, build_id: str, workspace: str, correlation_id: str) -> BuildWaiter | None:
        self._answer()
        with self._lock:
            waiters = self._waiters.get(build_id, {})
            waiter = waiters.pop((workspace, correlation_id), None)
            if not waiters:
                self._waiters.pop(build_id, None)
            return waiter
