"""Request and response bodies of the HTTP API (they are what OpenAPI shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.builds import BuildRecord
from shared.domain.records import Change, Description, EnvironmentRecord, JobRecord


class BuildIn(BaseModel):
    """A build context by the digest the contexts endpoint returned."""

    model_config = ConfigDict(extra="allow")

    context: str | None = Field(None, description="sha256:<64 hex> from POST /contexts")
    dockerfile_path: str | None = Field(None, description="relative to the context; Dockerfile by default")


class DefinitionIn(BaseModel):
    """An Azure ML CLI v2 environment definition as JSON; conda_file inline, build by context digest."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_: str | None = Field(None, alias="$schema")
    name: str | None = None
    version: str | int | float | None = None
    description: str | None = None
    tags: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    image: str | None = None
    conda_file: dict[str, Any] | str | None = Field(
        None, description="the conda specification as a mapping (a file path is refused: send its content)")
    build: BuildIn | None = None
    inference_config: dict[str, Any] | None = None
    os_type: str | None = None

    def document(self) -> dict[str, Any]:
        """The fields the caller set, for the domain's own checks."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class DescriptionOut(BaseModel):
    """What envhub derives from a definition."""

    hash: str
    image: str
    anonymous_version: str
    kind: str
    base_images: list[str]

    @classmethod
    def of(cls, d: Description) -> DescriptionOut:
        return cls(hash=d.hash, image=d.image, anonymous_version=d.anonymous_version, kind=d.kind.value,
                   base_images=d.base_images)


class EnvironmentOut(DescriptionOut):
    """One environment version."""

    name: str
    version: str
    created_at: datetime
    archived: bool
    anonymous: bool
    curated: bool
    definition: dict[str, Any]

    @classmethod
    def of_record(cls, r: EnvironmentRecord) -> EnvironmentOut:
        d = r.description
        return cls(hash=d.hash, image=d.image, anonymous_version=d.anonymous_version, kind=d.kind.value,
                   base_images=d.base_images, name=r.name, version=r.version, created_at=r.created_at,
                   archived=r.archived, anonymous=r.anonymous, curated=r.curated,
                   definition=r.definition.model_dump(mode="json", exclude_none=True))


class EnvironmentPage(BaseModel):
    """An Azure-style page."""

    value: list[EnvironmentOut]
    nextLink: str | None = None


class DiffOut(BaseModel):
    """How two versions differ."""

    name: str
    version: str
    against: str
    hash_changed: bool
    changes: list[Change]


class ContextOut(BaseModel):
    """A stored build context."""

    digest: str
    files: int
    size: int


class JobIn(BaseModel):
    """A job submission; only its environment matters to envhub, the rest is recorded."""

    model_config = ConfigDict(extra="allow")

    environment: str | dict[str, Any] = Field(
        description="'azureml:name:version', 'azureml:name@latest' or an inline definition"
    )
    name: str | None = None
    command: str | None = None
    display_name: str | None = None


class JobOut(BaseModel):
    """A recorded job and the environment version it used."""

    id: str
    created_at: datetime
    environment: EnvironmentOut | None = None
    environment_name: str
    environment_version: str
    environment_hash: str
    spec: dict[str, Any]

    @classmethod
    def of(cls, job: JobRecord, env: EnvironmentRecord | None) -> JobOut:
        return cls(id=job.id, created_at=job.created_at, environment_name=job.environment_name,
                   environment_version=job.environment_version, environment_hash=job.environment_hash,
                   spec=job.spec, environment=None if env is None else EnvironmentOut.of_record(env))


class BuildOut(BaseModel):
    """A build record."""

    id: str
    hash: str
    status: str
    image: str
    environment_name: str
    environment_version: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    builder: str | None
    reason: str | None
    base_digests: dict[str, str | None]
    resolved: dict[str, str] = {}  # build-time templates as written -> what the build used
    digest: str | None
    tags: list[str]
    packages: list[str]

    @classmethod
    def of(cls, b: BuildRecord) -> BuildOut:
        return cls(**b.model_dump(exclude={"dockerfile", "cancel_requested", "workspace"}))


class EnsureOut(BaseModel):
    """The answer to 'ensure the image': the image and its digest, or the build that makes it."""

    image: str
    cached: bool
    digest: str | None = None
    build_id: str | None = None
    status: str
    build: BuildOut | None = None


class ImageDetailsOut(BaseModel):
    """Image details, as Azure ML's get_image_details gives them, plus envhub's build facts."""

    image: str
    exists: bool
    digest: str | None
    dockerfile: str | None
    user_image: bool
    build_status: str | None
    build: BuildOut | None
    base_digests: dict[str, str | None]
    resolved: dict[str, str] = {}  # build-time templates as written -> what the latest build used


class LogOut(BaseModel):
    """A slice of a build log."""

    build_id: str
    status: str
    lines: list[str]
    next_offset: int
    finished: bool


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field(description="urn:envhub:problem:<kind>")
    title: str
    status: int
    detail: str = Field(description="what is wrong")
    instance: str = Field(description="the request path")
    where: str | None = Field(None, description="the field, file or member at fault")


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route can answer with."""
    described = {400: "malformed input", 401: "no valid bearer token", 403: "the caller's role is too low",
                 404: "not found", 409: "conflict", 413: "too large",
                 422: "an invalid definition", 503: "a registry or the queue cannot answer; retry after Retry-After"}
    # `model` registers the Problem schema (FastAPI also lists it under application/json); the body is sent as
    # problem+json, so that media type carries the schema too and clients can validate what they receive.
    return {code: {"model": Problem, "description": described.get(code, "error"),
                   "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for code in codes}


# What a route taking a JSON body can also answer: a body that does not parse (400), or one past the body limit
# (413, from the BodyLimits middleware before any route runs).
BODY_PROBLEMS = problem_responses(400, 413)
