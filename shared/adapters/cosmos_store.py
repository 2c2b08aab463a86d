"""The environment store on Cosmos DB: version documents and a per-name head document in each workspace's partition."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial

from azure.cosmos import DatabaseProxy

from shared.adapters.cosmos_common import Conflict, Doc, Docs, backoff, connect
from shared.adapters.cosmos_containers import container_of, containers
from shared.domain.errors import StoreUnavailable
from shared.domain.records import Container, EnvironmentRecord, JobRecord, with_mutable
from shared.ports import Page
from shared.settings import Settings

log = logging.getLogger(__name__)
_EVERY_VERSION = "SELECT VALUE c.record FROM c WHERE c.type = 'version'"
_EACH_PAGE = 500
_WITH_HASH = ("SELECT TOP 1 VALUE 1 FROM c WHERE c.workspace = @ws AND c.type = 'version' "
              "AND c.record.description.hash = @hash")
_HEADS = "SELECT VALUE c.record FROM c WHERE c.workspace = @ws AND c.type = 'head' AND c.listed = true ORDER BY c.name"
_HISTORY = ("SELECT VALUE c.record FROM c WHERE c.workspace = @ws AND c.type = 'version' AND c.name = @name "
            "ORDER BY c.key DESC")
_NEWEST_LIVE = ("SELECT TOP 1 * FROM c WHERE c.workspace = @ws AND c.type = 'version' AND c.name = @name "
                "AND c.archived = false ORDER BY c.key DESC")


class CosmosStore:
    """Environment versions and jobs in Cosmos DB.

    `v:{name}:{version}` holds a version; `n:{name}` is the name's head: the integer counter `insert_next`
    allocates from, the newest creation key, and the latest live version with its whole record (so `latest`
    is one point read and `list_latest` one query over heads). Every head change is an etag-conditional write."""

    def __init__(self, database: DatabaseProxy) -> None:
        self.operations: Counter[str] = Counter()
        self._docs = Docs(database.get_container_client("environments"), self.operations)
        self._jobs = Docs(database.get_container_client("jobs"), self.operations)

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosStore:
        """The store the settings describe."""
        return cls(connect(settings))

    def check(self) -> None:
        self._docs.check()

    def insert(self, record: EnvironmentRecord) -> bool:
        head = self._docs.read(_head_id(record.name), record.workspace)
        doc = _version_doc(record, key=_next_key(head))
        try:
            self._docs.create_once(doc, record.workspace)
        except Conflict:
            # Already there. Its head update may have been lost to a crash: absorbing it again heals that.
            existing = self._docs.read(doc["id"], record.workspace)
            if existing is not None:
                self._change_head(record.workspace, record.name, partial(_absorb, doc=existing), known=head)
            return False
        self._absorb_stored(doc, head)
        return True

    def insert_next(self, record: EnvironmentRecord) -> EnvironmentRecord:
        head: Doc | None = None
        while True:
            head = self._change_head(record.workspace, record.name, _allocate, known=head)
            # From here on a crash leaves a gap in the versions, never a stuck name: the counter has moved on.
            stored = record.model_copy(update={"version": str(head["counter"])})
            doc = _version_doc(stored, key=head["last_key"])
            try:
                self._docs.create_once(doc, record.workspace)
            except Conflict:
                continue  # registered explicitly by a call that has not raised the counter (yet): take the next
            self._absorb_stored(doc, head)
            return stored

    def _absorb_stored(self, doc: Doc, head: Doc | None) -> None:
        """Point the head at a version just stored, trying twice. The version is stored whatever happens here:
        failing the call would have its caller register it a second time, so an outage is logged instead, and
        `latest` names the previous version until the next write to the name makes up for it."""
        workspace, name = doc["workspace"], doc["name"]
        for attempt in (1, 2):
            try:
                self._change_head(workspace, name, partial(_absorb, doc=doc), known=head if attempt == 1 else None)
                return
            except StoreUnavailable as error:
                if attempt == 2:
                    log.warning("%s:%s is stored but its head is behind (%s); the next write to it catches up",
                                name, doc["version"], error)

    def get(self, workspace: str, name: str, version: str) -> EnvironmentRecord | None:
        doc = self._docs.read(_version_id(name, version), workspace)
        return None if doc is None else EnvironmentRecord.model_validate(doc["record"])

    def latest(self, workspace: str, name: str) -> EnvironmentRecord | None:
        head = self._docs.read(_head_id(name), workspace)
        return None if head is None or head["record"] is None else EnvironmentRecord.model_validate(head["record"])

    def list_latest(self, workspace: str, *, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        items, after = self._docs.page(_HEADS, {"@ws": workspace}, pk=workspace, top=top, cursor=cursor)
        return Page([EnvironmentRecord.model_validate(item) for item in items], after)

    def history(self, workspace: str, name: str, *, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        params = {"@ws": workspace, "@name": name}
        items, after = self._docs.page(_HISTORY, params, pk=workspace, top=top, cursor=cursor)
        return Page([EnvironmentRecord.model_validate(item) for item in items], after)

    def set_archived(self, workspace: str, name: str, version: str, archived: bool) -> EnvironmentRecord | None:
        return self._update(workspace, name, version, lambda r: r.model_copy(update={"archived": archived}))

    def update_version(self, record: EnvironmentRecord) -> EnvironmentRecord | None:
        return self._update(record.workspace, record.name, record.version, lambda r: with_mutable(r, record))

    def _update(self, workspace: str, name: str, version: str,
                change: Callable[[EnvironmentRecord], EnvironmentRecord]) -> EnvironmentRecord | None:
        """Change one version with its etag (retrying from a fresh read), then the head, which caches it."""
        while True:
            doc = self._docs.read(_version_id(name, version), workspace)
            if doc is None:
                return None
            record = change(EnvironmentRecord.model_validate(doc["record"]))
            dumped = record.model_dump(mode="json")
            if doc["archived"] != record.archived or doc["record"] != dumped:
                try:
                    self._docs.replace({**doc, "archived": record.archived, "record": dumped})
                except Conflict:
                    continue
            # Recomputed even when unchanged: an earlier call may have died between its two writes.
            self._change_head(workspace, name, lambda h: self._point_at_newest(h, workspace, name))
            return record

    def container(self, workspace: str, name: str) -> Container | None:
        head = self._docs.read(_head_id(name), workspace)
        return None if head is None else container_of(self._docs, head)

    def containers(self, workspace: str, *, archived: bool | None, top: int,
                   cursor: str | None) -> Page[Container]:
        return containers(self._docs, workspace, archived=archived, top=top, cursor=cursor)

    def insert_job(self, job: JobRecord) -> bool:
        try:
            self._jobs.create_once({"id": _job_id(job.id), "workspace": job.workspace, "type": "job",
                                    "record": job.model_dump(mode="json")}, job.workspace)
        except Conflict:
            return False
        return True

    def get_job(self, workspace: str, job_id: str) -> JobRecord | None:
        doc = self._jobs.read(_job_id(job_id), workspace)
        return None if doc is None else JobRecord.model_validate(doc["record"])

    def update_job(self, workspace: str, job_id: str,
                   change: Callable[[JobRecord], JobRecord]) -> JobRecord | None:
        while True:  # read, change, replace if unchanged since the read (etag); on a conflict, from a fresh read
            doc = self._jobs.read(_job_id(job_id), workspace)
            if doc is None:
                return None
            job = change(JobRecord.model_validate(doc["record"]))
            try:
                self._jobs.replace({**doc, "record": job.model_dump(mode="json")})
            except Conflict:
                continue
            return job

    def has_hash(self, workspace: str, hash_hex: str) -> bool:
        items, _ = self._docs.page(_WITH_HASH, {"@ws": workspace, "@hash": hash_hex}, pk=workspace, top=1,
                                   cursor=None)
        return bool(items)

    def each_version(self) -> Iterator[EnvironmentRecord]:
        cursor: str | None = None
        while True:  # a page at a time: the whole store never sits in memory at once
            items, cursor = self._docs.page(_EVERY_VERSION, {}, pk=None, top=_EACH_PAGE, cursor=cursor)
            yield from (EnvironmentRecord.model_validate(item) for item in items)
            if cursor is None:
                return

    def _change_head(self, workspace: str, name: str, change: Callable[[Doc], bool], *,
                     known: Doc | None = None) -> Doc:
        """Apply `change` to the name's head with an etag (creating the head if it is missing), retrying on
        conflicts from a fresh read; `known` is a head just read or written, saving the first read."""
        head, attempt = known, 0
        while True:
            if head is None:
                head = self._docs.read(_head_id(name), workspace)
            try:
                if head is None:
                    fresh = _new_head(workspace, name)
                    change(fresh)
                    return self._docs.create(fresh)
                if not change(head):
                    return head
                return self._docs.replace(head)
            except Conflict:
                head, attempt = None, attempt + 1
                backoff(attempt)

    def _point_at_newest(self, head: Doc, workspace: str, name: str) -> bool:
        newest, _ = self._docs.page(_NEWEST_LIVE, {"@ws": workspace, "@name": name}, pk=workspace, top=1,
                                    cursor=None)
        before = dict(head)
        head.update(latest=None, latest_key="", listed=False, record=None)
        if newest:
            _absorb(head, newest[0])
        return head != before


def _new_head(workspace: str, name: str) -> Doc:
    return {"id": _head_id(name), "workspace": workspace, "type": "head", "name": name, "counter": 0,
            "last_key": "", "latest": None, "latest_key": "", "listed": False, "record": None, "newest_key": ""}


def _allocate(head: Doc) -> bool:
    """Take the next integer version, and a creation key after every earlier one of this name."""
    head["counter"] += 1
    head["last_key"] = _next_key(head)
    return True


def _absorb(head: Doc, doc: Doc) -> bool:
    """Make the head account for a stored version: raise the counter past an all-digit version, and point at
    the version when it is live and newer than the current latest. False when the head already did."""
    before = dict(head)
    version: str = doc["version"]
    if version.isascii() and version.isdigit():
        head["counter"] = max(head["counter"], int(version))
    # The newest stored version, archived or not (for containers). A head older than this field takes only a
    # version past every key it has seen, so an old version absorbed again cannot pass for the newest.
    if doc["key"] >= head.get("newest_key", head["last_key"]):
        head.update(newest=version, newest_key=doc["key"])
    head["last_key"] = max(head["last_key"], doc["key"])
    head["anonymous"] = doc["record"]["anonymous"]  # a name holds anonymous versions only, or none
    if not doc["archived"] and doc["key"] > head["latest_key"]:
        head.update(latest=version, latest_key=doc["key"], listed=not doc["record"]["anonymous"],
                    record=doc["record"])
    return head != before


def _next_key(head: Doc | None) -> str:
    """A sortable creation key: microseconds since the epoch, never below the head's last key (so a version
    created later sorts later whatever the clocks do), plus a random tiebreak for two concurrent creators."""
    last = int(head["last_key"][:16] or 0) if head else 0
    return f"{max(time.time_ns() // 1000, last + 1):016d}.{secrets.token_hex(4)}"


def _version_doc(record: EnvironmentRecord, *, key: str) -> Doc:
    return {"id": _version_id(record.name, record.version), "workspace": record.workspace, "type": "version",
            "name": record.name, "version": record.version, "key": key, "archived": record.archived,
            "record": record.model_dump(mode="json")}


def _version_id(name: str, version: str) -> str:
    return _short(f"v:{name}:{version}")  # names have no ':' and versions no ':' or '/', so ids never clash


def _head_id(name: str) -> str:
    return _short(f"n:{name}")


def _job_id(job_id: str) -> str:
    # Cosmos ids may not hold / \ ? #; escaping them (and '%') keeps distinct job ids distinct.
    return _short("".join(f"%{ord(c):02X}" if c in "/\\?#%" else c for c in job_id))


def _short(doc_id: str) -> str:
    """Ids are limited to 255 characters; a longer one is replaced by its digest (names stay in the body)."""
    return doc_id if len(doc_id) <= 200 else f"{doc_id[:2]}~{hashlib.sha256(doc_id.encode()).hexdigest()}"
