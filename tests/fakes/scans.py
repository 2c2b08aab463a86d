"""An in-memory ScanStore with the port's semantics; one lock stands in for the database's atomic writes."""

from __future__ import annotations

import json
from datetime import UTC

from shared.domain.errors import NotFound, StaleRecord
from shared.domain.scans import Finding, FindingStatus, Scan
from shared.ports import Page
from tests.fakes.stores import _Answering


class FakeScanStore(_Answering):
    """Scans by id, findings by (workspace, id), digests by repository; cursors are the last listed key."""

    def __init__(self) -> None:
        super().__init__()
        self._scans: dict[str, Scan] = {}
        self._findings: dict[tuple[str, str], Finding] = {}
        self._digests: dict[str, dict[str, str]] = {}

    def create_scan(self, scan: Scan) -> None:
        self._answer()
        with self._lock:
            if scan.id in self._scans:
                raise StaleRecord(f"scan {scan.id} exists already")
            self._scans[scan.id] = scan

    def get_scan(self, scan_id: str) -> Scan | None:
        self._answer()
        with self._lock:
            return self._scans.get(scan_id)

    def list_scans(self, *, top: int, cursor: str | None) -> Page[Scan]:
        self._answer()
        _positive(top)
        after = None if cursor is None else tuple(_decode(cursor))
        with self._lock:
            newest_first = sorted(self._scans.values(), key=_scan_key, reverse=True)
        listed = [s for s in newest_first if after is None or _scan_key(s) < after]
        return Page(listed[:top], json.dumps(_scan_key(listed[top - 1])) if len(listed) > top else None)

    def update_scan(self, scan: Scan) -> Scan:
        self._answer()
        with self._lock:
            stored = self._scans.get(scan.id)
            if stored is None:
                raise NotFound(f"no scan {scan.id}")
            if stored.revision != scan.revision:
                raise StaleRecord(f"scan {scan.id} is at revision {stored.revision}, not {scan.revision}")
            saved = scan.model_copy(update={"revision": scan.revision + 1})
            self._scans[scan.id] = saved
            return saved

    def get_finding(self, workspace: str, finding_id: str) -> Finding | None:
        self._answer()
        with self._lock:
            return self._findings.get((workspace, finding_id))

    def put_finding(self, finding: Finding) -> Finding:
        self._answer()
        with self._lock:
            stored = self._findings.get((finding.workspace, finding.id))
            if (0 if stored is None else stored.revision) != finding.revision:
                raise StaleRecord(f"finding {finding.id} is not at revision {finding.revision}")
            saved = finding.model_copy(update={"revision": finding.revision + 1})
            self._findings[finding.workspace, finding.id] = saved
            return saved

    def list_findings(self, workspace: str, *, top: int, cursor: str | None,
                      statuses: frozenset[FindingStatus] | None = None) -> Page[Finding]:
        self._answer()
        _positive(top)
        after = None if cursor is None else tuple(_decode(cursor))
        with self._lock:
            listed = sorted((f for f in self._findings.values() if f.workspace == workspace
                             and (statuses is None or f.status in statuses)
                             and (after is None or _finding_key(f) > after)), key=_finding_key)
        return Page(listed[:top], json.dumps(_finding_key(listed[top - 1])) if len(listed) > top else None)

    def findings_of(self, workspace: str, name: str, version: str) -> list[Finding]:
        self._answer()
        with self._lock:
            return sorted((f for f in self._findings.values() if f.workspace == workspace
                           and f.environment_name == name and f.environment_version == version), key=_finding_key)

    def known_digests(self, repository: str) -> dict[str, str]:
        self._answer()
        with self._lock:
            return dict(self._digests.get(repository, {}))

    def remember_digests(self, repository: str, digests: dict[str, str]) -> None:
        self._answer()
        with self._lock:
            self._digests.setdefault(repository, {}).update(digests)


def _scan_key(scan: Scan) -> tuple[str, ...]:
    started = scan.started_at.replace(tzinfo=UTC) if scan.started_at.tzinfo is None else scan.started_at
    return (started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), scan.id)  # fixed width: sorts as text


def _finding_key(finding: Finding) -> tuple[str, ...]:
    return (finding.environment_name, finding.environment_version, finding.type.value, finding.id)


def _positive(top: int) -> None:
    if top < 1:
        raise ValueError(f"a page holds at least one item, not {top}")


def _decode(cursor: str) -> list[str]:
    try:
        key = json.loads(cursor)
    except json.JSONDecodeError as error:
        raise ValueError("not a cursor this store handed out") from error
    if not isinstance(key, list):
        raise ValueError("not a cursor this store handed out")
    return [str(part) for part in key]
