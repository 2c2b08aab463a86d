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
