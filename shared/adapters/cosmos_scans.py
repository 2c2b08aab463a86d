"""Scans, findings and remembered tag digests in Cosmos DB. Optimistic writes are etag-conditional replaces (and
conditional creates for revision 0), so Cosmos DB itself decides which of two writers of one revision wins."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, OrderedDict
from datetime import UTC, datetime
from typing import Any

from azure.cosmos import DatabaseProxy

from shared.adapters.cosmos_common import Conflict, Doc, Docs, backoff, connect, decode_cursor, encode_cursor
from shared.domain.errors import NotFound, StaleRecord
from shared.domain.scans import Finding, FindingStatus, Scan
from shared.ports import Page
from shared.settings import Settings

_SCANS = ("SELECT TOP @top c.key, c.record, c._etag FROM c WHERE c.type = 'scan' "
          "ORDER BY c.key DESC")
_SCANS_AFTER = ("SELECT TOP @top c.key, c.record, c._etag FROM c WHERE c.type = 'scan' AND c.key < @after "
                "ORDER BY c.key DESC")
_FINDINGS = "SELECT c.record, c._etag FROM c WHERE c.workspace = @ws AND c.type = 'finding' ORDER BY c.key"
_FINDINGS_IN = ("SELECT c.record, c._etag FROM c WHERE c.workspace = @ws AND c.type = 'finding' "
                "AND ARRAY_CONTAINS(@statuses, c.status) ORDER BY c.key")
_FINDINGS_OF = ("SELECT c.record, c._etag FROM c WHERE c.workspace = @ws AND c.type = 'finding' AND c.name = @name "
                "AND c.version = @version ORDER BY c.key")
_TAG_ENTRIES = "SELECT VALUE c.entries FROM c WHERE c.repository = @repository AND c.type = 'tags'"
_TAG_CHUNKS = "SELECT * FROM c WHERE c.repository = @repository AND c.type = 'tags'"

_CHUNK_BYTES = 256 * 1024  # a chunk's encoded entries: far below the 2 MB limit, and 16 fill one query page
_ETAGS_KEPT = 4096


class CosmosScanStore:
    """The ScanStore port on Cosmos DB.

    `scans` (partition key `/pk`): one document per scan, `{id: scan id (escaped), pk: scan id, type: "scan",
    key: started_at + "|" + id, record}`; listing newest first is a cross-partition `TOP` query ordered by `key`
    descending, its cursor the last key listed.
    `findings` (`/workspace`): one document per finding, `{id: finding id (escaped), workspace, type: "finding",
    name, version, status, key: name\\x01version\\x01type\\x01id, record}`; listings are single-partition queries
    ordered by the one `key` property (no composite index needed), cursors Cosmos DB's continuation tokens.
    `tags` (`/repository`): `{id: "{bucket}.{n}", repository, type: "tags", bucket, n, entries}` where `entries`
    is the JSON text of {tag: digest} for the tags whose sha256 starts with hex digit `bucket`, chunk `n` of
    that bucket's chain (a new chunk starts when one would pass 256 KB). Ids need only be unique within a
    partition, so the repository (with its '/') never appears in an id. `entries` is one string so that Cosmos
    DB indexes one term per chunk, not one per tag.

    The adapter remembers the etag each scan and finding had at the revision it last read or wrote, so an
    update of a record just read (or listed) is one conditional replace, with no second read."""

    def __init__(self, database: DatabaseProxy) -> None:
        self.operations: Counter[str] = Counter()
        self._scans = Docs(database.get_container_client("scans"), self.operations)
        self._findings = Docs(database.get_container_client("findings"), self.operations)
        self._tags = Docs(database.get_container_client("tags"), self.operations)
        self._etags = _Etags(_ETAGS_KEPT)

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosScanStore:
        """The store the settings describe."""
        return cls(connect(settings))

    def check(self) -> None:
        for docs in (self._scans, self._findings, self._tags):  # a container missing from the account shows here
            docs.check()

    def create_scan(self, scan: Scan) -> None:
        try:
            written = self._scans.create(_scan_doc(scan))
        except Conflict as error:
            raise StaleRecord(f"scan {scan.id} exists already") from error
        self._etags.remember(("scan", scan.id), scan.revision, written["_etag"])

    def get_scan(self, scan_id: str) -> Scan | None:
        doc = self._scans.read(_doc_id(scan_id), scan_id)
        return None if doc is None else self._scan(doc)

    def list_scans(self, *, top: int, cursor: str | None) -> Page[Scan]:
        if top < 1:
            raise ValueError(f"a page holds at least one item, not {top}")
        after = decode_cursor(cursor)
        query, params = (_SCANS, {"@top": top + 1}) if after is None else (_SCANS_AFTER, {"@top": top + 1,
                                                                                           "@after": after})
        # Our own cursor (the last key) rather than a continuation token: the query spans partitions.
        items, _ = self._scans.page(query, params, pk=None, top=top + 1, cursor=None)
        scans = [self._scan(item) for item in items[:top]]
        return Page(scans, encode_cursor(items[top - 1]["key"]) if len(items) > top else None)

    def update_scan(self, scan: Scan) -> Scan:
        key = ("scan", scan.id)
        etag = self._etags.at(key, scan.revision)
        if etag is None:
            doc = self._scans.read(_doc_id(scan.id), scan.id)
            if doc is None:
                raise NotFound(f"no scan {scan.id}")
            stored = self._scan(doc)
            if stored.revision != scan.revision:
                raise StaleRecord(f"scan {scan.id} is at revision {stored.revision}, not {scan.revision}")
            etag = doc["_etag"]
        saved = scan.model_copy(update={"revision": scan.revision + 1})
        try:
            written = self._scans.replace({**_scan_doc(saved), "_etag": etag})
        except Conflict as error:  # every write moves the revision on: a changed etag means a newer revision
            raise StaleRecord(f"scan {scan.id} changed since revision {scan.revision}") from error
        self._etags.remember(key, saved.revision, written["_etag"])
        return saved

    def get_finding(self, workspace: str, finding_id: str) -> Finding | None:
        doc = self._findings.read(_doc_id(finding_id), workspace)
        return None if doc is None else self._finding(doc)

    def put_finding(self, finding: Finding) -> Finding:
        key = ("finding", finding.workspace, finding.id)
        saved = finding.model_copy(update={"revision": finding.revision + 1})
        doc = _finding_doc(saved)
        try:
            if finding.revision == 0:
                written = self._findings.create(doc)
            else:
                etag = self._etags.at(key, finding.revision)
                if etag is None:
                    stored = self._findings.read(doc["id"], finding.workspace)
                    if stored is None or self._finding(stored).revision != finding.revision:
                        raise Conflict(finding.id)
                    etag = stored["_etag"]
                written = self._findings.replace({**doc, "_etag": etag})
        except Conflict as error:
            raise StaleRecord(f"finding {finding.id} is not at revision {finding.revision}") from error
        self._etags.remember(key, saved.revision, written["_etag"])
        return saved

    def list_findings(self, workspace: str, *, top: int, cursor: str | None,
                      statuses: frozenset[FindingStatus] | None = None) -> Page[Finding]:
        params: dict[str, Any] = {"@ws": workspace}
        query = _FINDINGS
        if statuses is not None:
            query, params["@statuses"] = _FINDINGS_IN, sorted(status.value for status in statuses)
        items, after = self._findings.page(query, params, pk=workspace, top=top, cursor=cursor)
        return Page([self._finding(item) for item in items], after)

    def findings_of(self, workspace: str, name: str, version: str) -> list[Finding]:
        items = self._findings.all(_FINDINGS_OF, {"@ws": workspace, "@name": name, "@version": version},
                                   pk=workspace)
        return [self._finding(item) for item in items]

    def known_digests(self, repository: str) -> dict[str, str]:
        known: dict[str, str] = {}
        for entries in self._tags.all(_TAG_ENTRIES, {"@repository": repository}, pk=repository):
            known.update(json.loads(entries))
        return known

    def remember_digests(self, repository: str, digests: dict[str, str]) -> None:
        pending, attempt = dict(digests), 0
        while pending:
            chains: dict[str, list[Doc]] = {}
            for chunk in self._tags.all(_TAG_CHUNKS, {"@repository": repository}, pk=repository):
                chains.setdefault(chunk["bucket"], []).append(chunk)
            buckets: dict[str, dict[str, str]] = {}
            for tag, digest in pending.items():
                buckets.setdefault(_bucket(tag), {})[tag] = digest
            lost: dict[str, str] = {}
            for bucket, tags in sorted(buckets.items()):
                try:
                    self._merge(repository, bucket, sorted(chains.get(bucket, []), key=lambda c: int(c["n"])), tags)
                except Conflict:  # another writer changed this bucket: merge its tags again from a fresh read
                    lost.update(tags)
            pending = lost
            if pending:
                attempt += 1
                backoff(attempt)

    def _merge(self, repository: str, bucket: str, chain: list[Doc], tags: dict[str, str]) -> None:
        """Write `tags` into a bucket's chain: in place where a chunk holds the tag, else into the last chunk
        while it has room, else into a new chunk. Conditional writes only; Conflict when the chain changed."""
        entries: list[dict[str, str]] = [json.loads(chunk["entries"]) for chunk in chain]
        sizes = [len(chunk["entries"]) for chunk in chain]
        changed: set[int] = set()
        for tag, digest in tags.items():
            holder = next((i for i, held in enumerate(entries) if tag in held), None)
            if holder is not None:
                if entries[holder][tag] != digest:
                    entries[holder][tag] = digest
                    changed.add(holder)
                continue
            grow = len(_encode({tag: digest}))
            if not entries or sizes[-1] + grow > _CHUNK_BYTES:
                entries.append({})
                sizes.append(2)
            entries[-1][tag] = digest
            sizes[-1] += grow
            changed.add(len(entries) - 1)
        first_new = int(chain[-1]["n"]) + 1 if chain else 0
        for i in sorted(changed):  # in chain order, so a chunk never exists without the ones before it
            if i < len(chain):
                self._tags.replace({**chain[i], "entries": _encode(entries[i])})
            else:
                n = first_new + i - len(chain)
                self._tags.create({"id": f"{bucket}.{n}", "repository": repository, "type": "tags",
                                   "bucket": bucket, "n": n, "entries": _encode(entries[i])})

    def _scan(self, doc: Doc) -> Scan:
        scan = Scan.model_validate(doc["record"])
        self._etags.remember(("scan", scan.id), scan.revision, doc["_etag"])
        return scan

    def _finding(self, doc: Doc) -> Finding:
        finding = Finding.model_validate(doc["record"])
        self._etags.remember(("finding", finding.workspace, finding.id), finding.revision, doc["_etag"])
        return finding


class _Etags:
    """The etag a document had at a record revision, for the documents last read or written (bounded, least
    recently remembered dropped first). A pair always comes from one response, so a replace with a remembered
    etag succeeds only while the document is still at that revision."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._known: OrderedDict[tuple[str, ...], tuple[int, str]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, key: tuple[str, ...], revision: int, etag: str) -> None:
        with self._lock:
            self._known[key] = (revision, etag)
            self._known.move_to_end(key)
            while len(self._known) > self._size:
                self._known.popitem(last=False)

    def at(self, key: tuple[str, ...], revision: int) -> str | None:
        with self._lock:
            known = self._known.get(key)
        return known[1] if known is not None and known[0] == revision else None


def _scan_doc(scan: Scan) -> Doc:
    return {"id": _doc_id(scan.id), "pk": scan.id, "type": "scan", "key": f"{_stamp(scan.started_at)}|{scan.id}",
            "record": scan.model_dump(mode="json")}


def _finding_doc(finding: Finding) -> Doc:
    key = "\x01".join((finding.environment_name, finding.environment_version, finding.type.value, finding.id))
    return {"id": _doc_id(finding.id), "workspace": finding.workspace, "type": "finding",
            "name": finding.environment_name, "version": finding.environment_version,
            "status": finding.status.value, "key": key, "record": finding.model_dump(mode="json")}


def _bucket(tag: str) -> str:
    """One of 16 chunk chains per repository: the first hex digit of the tag's sha256."""
    return hashlib.sha256(tag.encode()).hexdigest()[0]


def _encode(entries: dict[str, str]) -> str:
    return json.dumps(entries, separators=(",", ":"), ensure_ascii=True)


def _doc_id(key: str) -> str:
    """Cosmos ids may not hold / \\ ? #; escaping them (and '%') keeps distinct keys distinct. Ids are limited to
    255 characters; a longer one is replaced by its digest (the key stays in the record)."""
    doc_id = "".join(f"%{ord(c):02X}" if c in "/\\?#%" else c for c in key)
    return doc_id if len(doc_id) <= 200 else f"~{hashlib.sha256(key.encode()).hexdigest()}"


def _stamp(moment: datetime) -> str:
    """A fixed-width UTC time that sorts as text (a naive time is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
