"""Builds: their states, their records, and the queue message that asks for one."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class BuildStatus(StrEnum):
    """queued → running → succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the build can change no more."""
        return self in (BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED)


class BuildRecord(BaseModel):
    """One build of one hash; a second request for the hash joins it while it is not finished."""

    model_config = ConfigDict(frozen=True)

    id: str
    hash: str
    workspace: str
    environment_name: str
    environment_version: str
    image: str  # repository, e.g. azureml/azureml_<32 hex>
    status: BuildStatus = BuildStatus.QUEUED
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    builder: str | None = None
    reason: str | None = None  # why it failed or was cancelled
    dockerfile: str | None = None
    base_digests: dict[str, str | None] = {}
    digest: str | None = None  # of the pushed image
    tags: list[str] = []
    packages: list[str] = []
    cancel_requested: bool = False


class BuildRequest(BaseModel):
    """The queue message: the same JSON whether a local queue or an Azure Storage queue carries it."""

    model_config = ConfigDict(frozen=True)

    type: str = "build"
    build_id: str
    workspace: str
    hash: str


class BuiltImage(BaseModel):
    """What a builder reports once the image is pushed."""

    model_config = ConfigDict(frozen=True)

    digest: str
    packages: list[str] = []


def immutable_tag(build_id: str, finished: datetime) -> str:
    """A tag no later build reuses, so a deployment can keep this digest after a rebuild moves :latest."""
    return f"{finished:%Y%m%d}.{build_id[:12]}"
