"""What the store keeps: environment versions and jobs, and how two versions differ."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.domain.definition import Definition, Kind


class Description(BaseModel):
    """What envhub derives from a definition: its cache key, image name, bases and Azure ML version."""

    model_config = ConfigDict(frozen=True)

    definition: Definition
    hash: str
    image: str
    base_images: list[str]
    anonymous_version: str

    @property
    def kind(self) -> Kind:
        """The definition's kind."""
        return self.definition.kind


class EnvironmentRecord(BaseModel):
    """One immutable version of an environment in a workspace."""

    model_config = ConfigDict(frozen=True)

    workspace: str
    name: str
    version: str
    description: Description
    anonymous: bool = False
    archived: bool = False
    curated: bool = False
    created_at: datetime

    @property
    def definition(self) -> Definition:
        """The definition this version holds."""
        return self.description.definition


class Container(BaseModel):
    """A name's versions as Azure ML's environment container shows them (anonymous names are never listed)."""

    model_config = ConfigDict(frozen=True)

    workspace: str
    name: str
    latest_version: str  # the most recently created version, archived or not
    next_version: str  # the integer version `insert_next` would give next
    archived: bool  # every version is archived


def with_mutable(stored: EnvironmentRecord, source: EnvironmentRecord) -> EnvironmentRecord:
    """`stored` with the parts a version may change taken from `source`: description, tags, properties and the
    archived flag. Everything that shapes the image stays as stored, so the hash does too."""
    definition = stored.definition.model_copy(update={
        "description": source.definition.description, "tags": source.definition.tags,
        "properties": source.definition.properties})
    return stored.model_copy(update={"description": stored.description.model_copy(update={"definition": definition}),
                                     "archived": source.archived})


class JobRecord(BaseModel):
    """A submitted job and the environment version it ran with."""

    model_config = ConfigDict(frozen=True)

    workspace: str
    id: str
    environment_name: str
    environment_version: str
    environment_hash: str
    created_at: datetime
    spec: dict[str, Any] = {}


class Change(BaseModel):
    """One field that differs between two versions."""

    field: str
    before: Any
    after: Any


def diff(before: EnvironmentRecord, after: EnvironmentRecord) -> list[Change]:
    """Fields of the definition that changed, with dotted paths into mappings."""
    changes: list[Change] = []
    _diff(before.definition.model_dump(mode="json"), after.definition.model_dump(mode="json"), "", changes)
    return changes


def _diff(a: Any, b: Any, prefix: str, out: list[Change]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key), out)
    elif a != b:
        out.append(Change(field=prefix, before=a, after=b))
