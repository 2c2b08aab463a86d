"""Builds: their states, their records, the queue messages that drive them, and what a builder reports."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.domain.plans import BuildPlan


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
    updated_at: datetime | None = None  # set by the store on every write: the recovery sweep's clock
    started_at: datetime | None = None
    finished_at: datetime | None = None
    revision: int = 0  # optimistic concurrency: BuildStore.update refuses a stale one
    attempts: int = 0
    builder: str | None = None
    reason: str | None = None  # why it failed or was cancelled
    plan: BuildPlan | None = None  # computed once, when the build is created
    platform: str = "linux"
    agent_pool: str | None = None  # dedicated build compute named by the workspace
    run_id: str | None = None  # the builder's run of the current attempt
    log_offset: int = 0  # how far the builder's log has been copied into envhub's
    checks: int = 0  # check messages handled; a check carrying another number is a duplicate
    base_digests: dict[str, str | None] = {}
    resolved: dict[str, str] = {}  # build-time templates: the text as written -> what this build used
    digest: str | None = None  # of the pushed image
    tags: list[str] = []
    packages: list[str] = []
    cancel_requested: bool = False
    replaces: str | None = None  # a rebuild: the digest it supersedes (an image with another was pushed by it)

    @property
    def dockerfile(self) -> str | None:
        """The Dockerfile this build runs."""
        return None if self.plan is None else self.plan.dockerfile


def new_build_id() -> str:
    """A build's id: random, so that no two builds of one hash share it (and so their immutable tags)."""
    return uuid.uuid4().hex


class BuildRequest(BaseModel):
    """A queue message: `build` dispatches a run, `check` follows it. The same JSON whether a local
    queue or an Azure Storage queue carries it."""

    model_config = ConfigDict(frozen=True)

    type: Literal["build", "check"] = "build"
    build_id: str
    workspace: str
    hash: str
    check: int = 0  # for `check`: the record's `checks` when it was sent


class RunState(StrEnum):
    """What a builder says of one run."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # the builder no longer knows the run (the process that ran it died)

    @property
    def finished(self) -> bool:
        """Whether the run can change no more."""
        return self not in (RunState.QUEUED, RunState.RUNNING)


class RunStatus(BaseModel):
    """One poll of a run: its state, the log since the offset asked for, and, once ended, its outcome."""

    model_config = ConfigDict(frozen=True)

    state: RunState
    log: list[str] = []
    log_offset: int = 0  # where the next poll starts
    digest: str | None = None  # of the pushed image, once SUCCEEDED
    packages: list[str] = []  # `pip freeze` / `conda list` inside the image, when the builder can tell
    reason: str | None = None  # why it FAILED


class BuiltImage(BaseModel):
    """What a builder reports once the image is pushed."""

    model_config = ConfigDict(frozen=True)

    digest: str
    packages: list[str] = []


def immutable_tag(build_id: str, finished: datetime) -> str:
    """A tag no later build reuses, so a deployment can keep this digest after a rebuild moves :latest."""
    return f"{finished:%Y%m%d}.{build_id[:12]}"
