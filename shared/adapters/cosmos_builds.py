"""Build records and logs in Cosmos DB; a per-hash head document, changed only by conditional writes, keeps one
unfinished build per hash across all workspaces."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from azure.core.exceptions import AzureError
from azure.cosmos import DatabaseProxy

from shared.adapters.cosmos_common import Conflict, Doc, Docs, backoff, connect
from shared.domain.builds import BuildRecord
from shared.domain.errors import NotFound, StaleRecord
from shared.settings import Settings

_LOG_END = ("SELECT TOP 1 c.first, c.size FROM c WHERE c.pk = @pk AND c.type = 'log' "
            "ORDER BY c.first DESC")
_LOG_FROM = ("SELECT c.first, c.lines FROM c WHERE c.pk = @pk AND c.type = 'log' AND c.first + c.size > @offset "
             "ORDER BY c.first")
_IDLE = "SELECT VALUE c.record FROM c WHERE c.type = 'build' AND c.finished = false AND c.updated_at < @since"
_CHUNK_LINES = 500  # a log chunk stays far below the 2 MB document limit
_CHUNK_CHARS = 256 * 1024


class CosmosBuildStore:
    """The BuildStore port on Cosmos DB's `builds` container (partition key `/pk`).

    A build is `{id: build_id, pk: build_id}`; its log is chunks `log:{build_id}:{first line:09d}` in the
    build's partition; a hash's head `{id: pk: "hash:"+hash, active, latest, count}` names the unfinished
    build (if any), the newest one, and how many there were."""

    def __init__(self, database: DatabaseProxy) -> None:
        self.operations: Counter[str] = Counter()
        self._docs = Docs(database.get_container_client("builds"), self.operations)

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosBuildStore:
        """The store the settings describe."""
        return cls(connect(settings))

    def check(self) -> None:
        self._docs.check()

    def start_or_join(self, record: BuildRecord) -> tuple[BuildRecord, bool]:
        record = record.model_copy(update={"updated_at": _now()})
        key = _head_id(record.hash)
        head = self._docs.read(key, key)
        created, attempt = False, 0
        while True:
            if head is not None and head["active"] not in (None, record.id):
                active = self.get(head["active"])
                if active is not None and not active.status.finished:
                    if created:  # best effort: unfinished() skips an orphan, so a failed delete costs nothing
                        with contextlib.suppress(AzureError):
                            self._docs.delete(record.id, record.id)
                    return active, False
            if not created:
                with contextlib.suppress(Conflict):  # Conflict: an earlier try of this same call stored it
                    self._docs.create(_build_doc(record))
                created = True
            try:
                if head is None:
                    self._docs.create({"id": key, "pk": key, "type": "hash", "active": record.id,
                                       "latest": record.id, "count": 1})
                elif head["active"] != record.id:  # an earlier try of this call may have won already
                    self._docs.replace({**head, "active": record.id, "latest": record.id,
                                        "count": head["count"] + 1})
                return record, True
            except Conflict:
                attempt += 1
                backoff(attempt)
                head = self._docs.read(key, key)

    def get(self, build_id: str) -> BuildRecord | None:
        doc = self._docs.read(build_id, build_id)
        return None if doc is None or doc["type"] != "build" else BuildRecord.model_validate(doc["record"])

    def latest_for_hash(self, hash_hex: str) -> BuildRecord | None:
        head = self._docs.read(_head_id(hash_hex), _head_id(hash_hex))
        return None if head is None else self.get(head["latest"])

    def count_for_hash(self, hash_hex: str) -> int:
        head = self._docs.read(_head_id(hash_hex), _head_id(hash_hex))
        return 0 if head is None else int(head["count"])

    def update(self, record: BuildRecord) -> BuildRecord:
        def change(stored: BuildRecord) -> BuildRecord:
            if stored.revision != record.revision:
                raise StaleRecord(f"build {record.id} is at revision {stored.revision}, not {record.revision}")
            return record.model_copy(update={"cancel_requested": record.cancel_requested or stored.cancel_requested})

        saved = self._change(record.id, change)
        if saved is None:
            raise NotFound(f"no build {record.id}")
        if saved.status.finished:
            self._free(saved)
        return saved

    def request_cancel(self, build_id: str) -> BuildRecord | None:
        def change(stored: BuildRecord) -> BuildRecord | None:
            if stored.status.finished or stored.cancel_requested:
                return None
            return stored.model_copy(update={"cancel_requested": True})

        return self._change(build_id, change)

    def unfinished(self, *, idle_since: datetime) -> list[BuildRecord]:
        found = [BuildRecord.model_validate(item)
                 for item in self._docs.all(_IDLE, {"@since": _stamp(idle_since)}, pk=None)]
        # A build that never became its hash's active one lost the race (or its starter died before the head
        # changed): it never ran, and nothing may recover it.
        heads: dict[str, Doc | None] = {}
        for build in found:
            if build.hash not in heads:
                heads[build.hash] = self._docs.read(_head_id(build.hash), _head_id(build.hash))
        live = [b for b in found if (heads[b.hash] or {}).get("active") == b.id]
        return sorted(live, key=lambda b: b.updated_at or b.created_at)

    def append_log(self, build_id: str, lines: list[str]) -> None:
        if not lines:
            return
        first = self._log_end(build_id)
        for chunk in _chunks(lines):
            while True:
                try:
                    self._docs.create({"id": f"log:{build_id}:{first:09d}", "pk": build_id, "type": "log",
                                       "first": first, "size": len(chunk), "lines": chunk})
                    break
                except Conflict:  # another writer took this line number: go after it
                    backoff(1)
                    first = self._log_end(build_id)
            first += len(chunk)

    def read_log(self, build_id: str, offset: int) -> list[str]:
        lines: list[str] = []
        for chunk in self._docs.all(_LOG_FROM, {"@pk": build_id, "@offset": offset}, pk=build_id):
            lines.extend(chunk["lines"][max(0, offset - chunk["first"]):])
        return lines

    def _change(self, build_id: str, change: Callable[[BuildRecord], BuildRecord | None]) -> BuildRecord | None:
        """Read, change and replace a build with its etag, again from a fresh read when another write came
        first; the stored record gets revision + 1 and `updated_at` now. The stored one when `change` says None."""
        attempt = 0
        while True:
            doc = self._docs.read(build_id, build_id)
            if doc is None or doc["type"] != "build":
                return None
            stored = BuildRecord.model_validate(doc["record"])
            changed = change(stored)
            if changed is None:
                return stored
            changed = changed.model_copy(update={"revision": stored.revision + 1, "updated_at": _now()})
            try:
                self._docs.replace({**_build_doc(changed), "_etag": doc["_etag"]})
            except Conflict:
                attempt += 1
                backoff(attempt)
                continue
            return changed

    def _free(self, build: BuildRecord) -> None:
        """Clear the hash's active pointer if it is this (finished) build."""
        key, attempt = _head_id(build.hash), 0
        while True:
            head = self._docs.read(key, key)
            if head is None or head["active"] != build.id:
                return
            try:
                self._docs.replace({**head, "active": None})
                return
            except Conflict:
                attempt += 1
                backoff(attempt)

    def _log_end(self, build_id: str) -> int:
        last, _ = self._docs.page(_LOG_END, {"@pk": build_id}, pk=build_id, top=1, cursor=None)
        return 0 if not last else int(last[0]["first"]) + int(last[0]["size"])


def _head_id(hash_hex: str) -> str:
    return f"hash:{hash_hex}"


def _build_doc(record: BuildRecord) -> Doc:
    return {"id": record.id, "pk": record.id, "type": "build", "hash": record.hash,
            "finished": record.status.finished, "updated_at": _stamp(record.updated_at or record.created_at),
            "record": record.model_dump(mode="json")}


def _chunks(lines: list[str]) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    size = 0
    for line in lines:
        if chunks[-1] and (len(chunks[-1]) >= _CHUNK_LINES or size + len(line) > _CHUNK_CHARS):
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line)
    return chunks


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    """A fixed-width UTC time that sorts as text (a naive time is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
