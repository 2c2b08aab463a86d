"""Patch watch: scans of base-image repositories, the findings they make, and the deployments they flag."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

OVERDUE_DAYS = 30  # Microsoft's policy: no vulnerability unpatched for more than 30 days
REPORT_CAP = 1000  # findings listed on a scan record (a Cosmos DB document stays well under its 2 MB)


class FindingType(StrEnum):
    """What a scan can say about one base image of one environment version."""

    BASE_MOVED = "base_moved"  # a mutable reference now names another digest than the last build used
    PATCH_AVAILABLE = "patch_available"  # a pinned tag has a newer tag in the same scheme and line
    BASE_MISSING = "base_missing"  # the tag or the repository is gone
    REGISTRY_ERROR = "registry_error"  # the registry failed: reported, never a finding about the image


class FindingStatus(StrEnum):
    """A finding's handling."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


class Finding(BaseModel):
    """One finding, the same record across scans until it is resolved (its id is derived, not random)."""

    model_config = ConfigDict(frozen=True)

    id: str
    workspace: str
    environment_name: str
    environment_version: str
    type: FindingType
    base_image: str  # as the definition names it
    current: str | None = None  # the digest the last build used, or the pinned tag
    available: str | None = None  # the new digest, or the newer tag
    available_created: datetime | None = None  # when the newer tag's image was made
    overdue: bool = False
    detail: str | None = None
    status: FindingStatus = FindingStatus.OPEN
    snoozed_until: datetime | None = None
    first_seen: datetime
    last_seen: datetime
    last_scan: str
    resolved_at: datetime | None = None
    revision: int = 0

    @property
    def environment(self) -> str:
        """name:version."""
        return f"{self.environment_name}:{self.environment_version}"


def finding_id(workspace: str, name: str, version: str, kind: FindingType, base_image: str) -> str:
    """The same environment, base and kind make the same finding in every scan (no double flags)."""
    key = "\x00".join((workspace, name, version, kind.value, base_image))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class ScanStatus(StrEnum):
    """running → finished."""

    RUNNING = "running"
    FINISHED = "finished"


class RefFacts(BaseModel):
    """What a scan learned about one reference in use (a tag, no tag, or a `{{latest-image-tag}}` template)."""

    model_config = ConfigDict(frozen=True)

    exists: bool = True  # False: the tag (or the whole repository) is gone
    digest: str | None = None  # for mutable references and templates: what the tag names now
    newer_tag: str | None = None  # for pinned tags: the newest tag of the same scheme and line
    newer_created: datetime | None = None  # when that newer tag's image was made
    resolved_tag: str | None = None  # for templates: the tag it resolves to


Trigger = Literal["timer", "api", "scheduler"]


class Scan(BaseModel):
    """One scan: fanned out as one message per repository, finished when every repository is done."""

    model_config = ConfigDict(frozen=True)

    id: str
    trigger: Trigger
    status: ScanStatus = ScanStatus.RUNNING
    started_at: datetime
    finished_at: datetime | None = None
    repositories: list[str]  # registry/repository, each scanned once
    done: list[str] = []
    errors: dict[str, str] = {}  # repository -> what the registry said
    facts: dict[str, dict[str, RefFacts]] = {}  # repository -> reference -> what was found
    new_findings: list[str] = []  # ids of findings this scan opened
    redeploys: list[str] = []  # workspace/deployment newly flagged by this scan
    # What `envhub scan --json` prints: every finding this scan made (capped, see REPORT_CAP) and every
    # deployment flagged after it.
    findings: list[dict[str, Any]] = []
    redeploy: list[dict[str, Any]] = []
    truncated: int = 0  # findings left out of `findings` by the cap
    notified: bool = False  # the webhook took the report
    notify_error: str | None = None  # why the last delivery failed
    revision: int = 0


class ScanRequest(BaseModel):
    """The queue message of one repository of one scan."""

    model_config = ConfigDict(frozen=True)

    type: Literal["scan"] = "scan"
    scan_id: str
    repository: str  # registry/repository
    references: list[str]  # the tags in use ("" for none) and `{{latest-image-tag[:REGEX]}}` templates


class Deployment(BaseModel):
    """An asset that runs an image: an online or batch endpoint's deployment."""

    model_config = ConfigDict(frozen=True)

    workspace: str
    name: str
    environment_name: str
    environment_version: str
    image_digest: str | None = None
    endpoint: str | None = None
    kind: Literal["online", "batch"] = "online"
    needs_redeploy: bool = False
    redeploy_reason: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def environment(self) -> str:
        """name:version."""
        return f"{self.environment_name}:{self.environment_version}"
