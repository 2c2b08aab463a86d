"""Reading and handling findings: list them, acknowledge one, snooze one until a date."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from shared.domain.errors import InvalidDefinition, NotFound, StaleRecord
from shared.domain.scans import Finding, FindingStatus
from shared.ports import Page, ScanStore
from shared.services.paging import page_of

MAX_ATTEMPTS = 20


class FindingService:
    """Findings of a workspace."""

    def __init__(self, *, scans: ScanStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.scans = scans
        self.clock = clock

    def list_findings(self, *, workspace: str, top: int, cursor: str | None,
                      statuses: frozenset[FindingStatus] | None = None) -> Page[Finding]:
        """A workspace's findings, optionally of some statuses."""
        return page_of(lambda: self.scans.list_findings(workspace, top=top, cursor=cursor, statuses=statuses))

    def get(self, *, workspace: str, finding_id: str) -> Finding:
        """One finding."""
        finding = self.scans.get_finding(workspace, finding_id)
        if finding is None:
            raise NotFound(f"no finding '{finding_id}' in workspace '{workspace}'", where=finding_id)
        return finding

    def acknowledge(self, *, workspace: str, finding_id: str) -> Finding:
        """Seen, and being handled: it stays listed and still flags deployments."""
        return self._set(workspace, finding_id, FindingStatus.ACKNOWLEDGED, None)

    def snooze(self, *, workspace: str, finding_id: str, until: datetime) -> Finding:
        """Quiet until `until`: no rebuild, no redeploy flag; the first scan after it opens the finding again."""
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if until <= self.clock():
            raise InvalidDefinition("a snooze ends in the future", where="until")
        return self._set(workspace, finding_id, FindingStatus.SNOOZED, until)

    def reopen(self, *, workspace: str, finding_id: str) -> Finding:
        """Undo an acknowledgement or a snooze."""
        return self._set(workspace, finding_id, FindingStatus.OPEN, None)

    def _set(self, workspace: str, finding_id: str, status: FindingStatus, until: datetime | None) -> Finding:
        for _ in range(MAX_ATTEMPTS):
            finding = self.get(workspace=workspace, finding_id=finding_id)
            if finding.status is FindingStatus.RESOLVED:
                raise InvalidDefinition("the finding is resolved; nothing to handle", where=finding_id)
            try:
                return self.scans.put_finding(finding.model_copy(update={"status": status, "snoozed_until": until}))
            except StaleRecord:
                continue
        raise StaleRecord(f"finding {finding_id} kept changing", where=finding_id)
