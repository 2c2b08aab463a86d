"""The inbox on Cosmos DB: container `inbox`, partition key `/pk`. An entry lives in its workspace's partition; the
replies owed when a build ends live in that build's partition (`build:<id>`), so taking them is one partition's
query."""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from typing import Any

from azure.cosmos import DatabaseProxy
from azure.cosmos.exceptions import CosmosResourceNotFoundError

from shared.adapters.cosmos_common import OPERATION_SECONDS, Conflict, Doc, Docs, answered, backoff
from shared.domain.errors import StoreUnavailable
from shared.domain.inbox import BuildWaiter, InboxEntry

_WAITERS = "SELECT * FROM c WHERE c.pk = @pk AND c.type = 'waiter'"
_ALL_WAITERS = "SELECT * FROM c WHERE c.type = 'waiter'"


class CosmosInboxStore:
    """The InboxStore port: a conditional create claims, an etag'd replace records the first reply, and a waiter is
    taken by the one caller whose delete removed it."""

    def __init__(self, database: DatabaseProxy) -> None:
        self.operations: Counter[str] = Counter()
        self._docs = Docs(database.get_container_client("inbox"), self.operations)

    def check(self) -> None:
        self._docs.check()

    def claim(self, entry: InboxEntry) -> InboxEntry:
        doc = _entry_doc(entry)
        while True:
            try:
                return InboxEntry.model_validate(self._docs.create_once(doc, entry.workspace)["entry"])
            except Conflict:  # claimed before (or by a concurrent claim): the stored entry wins
                stored = self._docs.read(doc["id"], entry.workspace)
                if stored is not None:
                    return InboxEntry.model_validate(stored["entry"])

    def finish(self, workspace: str, correlation_id: str, reply: dict[str, Any],
               build_id: str | None = None) -> InboxEntry | None:
        attempt = 0
        while True:
            doc = self._docs.read(_entry_id(correlation_id), workspace)
            if doc is None:
                return None
            entry = InboxEntry.model_validate(doc["entry"])
            if entry.reply is not None:  # the first reply stays
                return entry
            entry = entry.model_copy(update={"reply": reply, "build_id": build_id})
            try:
                self._docs.replace({**doc, "entry": entry.model_dump(mode="json")})
                return entry
            except Conflict:  # finished (or changed) between the read and the write: read again
                attempt += 1
                backoff(attempt)

    def get_entry(self, workspace: str, correlation_id: str) -> InboxEntry | None:
        doc = self._docs.read(_entry_id(correlation_id), workspace)
        return None if doc is None else InboxEntry.model_validate(doc["entry"])

    def wait_for(self, waiter: BuildWaiter) -> None:
        # Stored already: the first one stays, as SQLite's ON CONFLICT DO NOTHING keeps it.
        with contextlib.suppress(Conflict):
            self._docs.create_once(_waiter_doc(waiter), _build_pk(waiter.build_id))

    def take_waiters(self, build_id: str) -> list[BuildWaiter]:
        pk = _build_pk(build_id)
        taken: list[BuildWaiter] = []
        outage: StoreUnavailable | None = None
        for doc in self._docs.all(_WAITERS, {"@pk": pk}, pk=pk):
            try:
                if self._delete(doc["id"], pk):
                    taken.append(BuildWaiter.model_validate(doc["waiter"]))
            except StoreUnavailable as error:  # this one stays stored for a later take; the taken are not lost
                outage = error
        if outage is not None and not taken:
            raise outage
        return taken

    def pending_waiters(self, top: int) -> list[BuildWaiter]:
        # Across partitions (one per build): only the recovery sweep asks, every few minutes.
        items, _ = self._docs.page(_ALL_WAITERS, {}, pk=None, top=top, cursor=None)
        return [BuildWaiter.model_validate(item["waiter"]) for item in items]

    def take_waiter(self, build_id: str, workspace: str, correlation_id: str) -> BuildWaiter | None:
        pk = _build_pk(build_id)
        doc = self._docs.read(_waiter_id(workspace, correlation_id), pk)
        if doc is None or not self._delete(doc["id"], pk):
            return None
        return BuildWaiter.model_validate(doc["waiter"])

    def _delete(self, doc_id: str, pk: str) -> bool:
        """Delete a document; True when this call removed it, False when it was gone (another caller took it)."""
        self._docs._count("delete")
        with answered(self._docs.name):
            try:
                self._docs.container.delete_item(doc_id, partition_key=pk, timeout=OPERATION_SECONDS)
            except CosmosResourceNotFoundError:
                return False
            return True


def _entry_doc(entry: InboxEntry) -> Doc:
    return {"id": _entry_id(entry.correlation_id), "pk": entry.workspace, "type": "entry",
            "entry": entry.model_dump(mode="json")}


def _waiter_doc(waiter: BuildWaiter) -> Doc:
    return {"id": _waiter_id(waiter.workspace, waiter.correlation_id), "pk": _build_pk(waiter.build_id),
            "type": "waiter", "waiter": waiter.model_dump(mode="json")}


def _build_pk(build_id: str) -> str:
    return f"build:{build_id}"


def _entry_id(correlation_id: str) -> str:
    return _short(f"e:{_escape(correlation_id)}")


def _waiter_id(workspace: str, correlation_id: str) -> str:
    # '|' is escaped inside both parts, so it separates them unambiguously.
    return _short(f"w:{_escape(workspace, '|')}|{_escape(correlation_id, '|')}")


def _escape(text: str, extra: str = "") -> str:
    """Cosmos ids may not hold / \\ ? #; escaping them (and '%') keeps distinct texts distinct."""
    return "".join(f"%{ord(c):02X}" if c in "/\\?#%" + extra else c for c in text)


def _short(doc_id: str) -> str:
    """Ids are limited to 255 characters; a longer one is replaced by its digest (the body keeps the whole)."""
    return doc_id if len(doc_id) <= 200 else f"{doc_id[:2]}~{hashlib.sha256(doc_id.encode()).hexdigest()}"
