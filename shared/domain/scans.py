"""Patch watch: scans of base-image repositories, the findings they make, and the deployments they flag."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

OVERDUE_DAYS = 30  # Microsoft's policy: no vulnerability unpatched for more than 30 days


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


class Scan(BaseModel):
    """One scan: fanned out as one message per repository, finished when every repository is done."""

    model_config = ConfigDict(frozen=True)

    id: str
    trigger: Literal["timer", "api", "scheduler"]
    status: ScanStatus = ScanStatus.RUNNING
    started_at: datetime
    finished_at: datetime | None = None
    repositories: list[str]  # registry/repository, each scanned once
    done: list[str] = []
    errors: dict[str, str] = {}  # repository -> what the registry said
    new_findings: list[str] = []  # ids of findings this scan opened
    redeploys: list[str] = []  # workspace/deployment flagged by this scan
    requests: int = 0  # registry requests made
    revision: int = 0


class ScanRequest(BaseModel):
    """The queue message of one repository of one scan."""

    model_config = ConfigDict(frozen=True)

    type: Literal["scan"] = "scan"
    scan_id: str
    repository: str  # registry/repository


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
