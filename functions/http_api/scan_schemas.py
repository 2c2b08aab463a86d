"""Response bodies of the patch watch routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.domain.scans import Finding, FindingStatus, FindingType, RefFacts, Scan, ScanStatus


class ScanOut(BaseModel):
    """A scan and where it stands."""

    id: str
    trigger: str
    status: ScanStatus
    started_at: datetime
    finished_at: datetime | None
    repositories: list[str]
    done: int
    errors: dict[str, str]
    facts: dict[str, dict[str, RefFacts]]
    new_findings: list[str]
    redeploys: list[str]
    findings: list[dict[str, Any]]
    redeploy: list[dict[str, Any]]
    truncated: int
    notified: bool
    notify_error: str | None

    @classmethod
    def of(cls, scan: Scan) -> ScanOut:
        """The response for a stored scan."""
        return cls(id=scan.id, trigger=scan.trigger, status=scan.status, started_at=scan.started_at,
                   finished_at=scan.finished_at, repositories=scan.repositories, done=len(scan.done),
                   errors=scan.errors, facts=scan.facts, new_findings=scan.new_findings, redeploys=scan.redeploys,
                   findings=scan.findings, redeploy=scan.redeploy, truncated=scan.truncated, notified=scan.notified,
                   notify_error=scan.notify_error)


class ScanPage(BaseModel):
    """An Azure-style page of scans."""

    value: list[ScanOut]
    nextLink: str | None = None


class FindingOut(BaseModel):
    """A finding as the API shows it."""

    id: str
    workspace: str
    environment: str
    type: FindingType
    base_image: str
    current: str | None
    available: str | None
    available_created: datetime | None
    overdue: bool
    detail: str | None
    status: FindingStatus
    snoozed_until: datetime | None
    first_seen: datetime
    last_seen: datetime
    last_scan: str
    resolved_at: datetime | None

    @classmethod
    def of(cls, finding: Finding) -> FindingOut:
        """The response for a stored finding."""
        return cls(id=finding.id, workspace=finding.workspace, environment=finding.environment, type=finding.type,
                   base_image=finding.base_image, current=finding.current, available=finding.available,
                   available_created=finding.available_created, overdue=finding.overdue, detail=finding.detail,
                   status=finding.status, snoozed_until=finding.snoozed_until, first_seen=finding.first_seen,
                   last_seen=finding.last_seen, last_scan=finding.last_scan, resolved_at=finding.resolved_at)


class FindingPage(BaseModel):
    """An Azure-style page of findings."""

    value: list[FindingOut]
    nextLink: str | None = None
