"""ARM bodies of environment containers and versions, as azure-ai-ml reads and writes them (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.arm import CONTAINER_TYPE, VERSION_TYPE, version_properties, workspace_id
from shared.domain.records import Container, EnvironmentRecord


class Scope(BaseModel):
    """The ARM path's subscription and resource group (echoed in ids) and envhub's workspace."""

    subscription: str
    resource_group: str
    workspace: str

    def environments(self) -> str:
        """The ARM id of the workspace's environments."""
        return f"{workspace_id(self.subscription, self.resource_group, self.workspace)}/environments"


class VersionIn(BaseModel):
    """A version PUT: `properties` carries the definition; id, name, systemData and read-only fields are ignored."""

    model_config = ConfigDict(extra="allow")

    properties: dict[str, Any] = Field(description="image, condaFile (YAML text), build, osType, inferenceConfig, "
                                                   "description, tags, properties, isAnonymous, isArchived")


class ContainerIn(BaseModel):
    """A container PUT: only `properties.isArchived` is kept (it archives or restores every version)."""

    model_config = ConfigDict(extra="allow")

    properties: dict[str, Any]


class SystemData(BaseModel):
    """When the resource was made."""

    createdAt: datetime
    lastModifiedAt: datetime


class BuildOut(BaseModel):
    """A Docker build context: envhub's context digest and the Dockerfile in it."""

    contextUri: str
    dockerfilePath: str | None = None


class VersionProperties(BaseModel):
    """An environment version's properties (absent values are left out)."""

    description: str | None = None
    tags: dict[str, str]
    properties: dict[str, str]
    isAnonymous: bool
    isArchived: bool
    image: str | None = None
    condaFile: str | None = Field(None, description="the conda specification as YAML text")
    build: BuildOut | None = None
    osType: str
    inferenceConfig: dict[str, Any] | None = None
    environmentType: str
    provisioningState: str


class VersionOut(BaseModel):
    """An environment version."""

    id: str
    name: str
    type: str = VERSION_TYPE
    systemData: SystemData
    properties: VersionProperties

    @classmethod
    def of(cls, record: EnvironmentRecord, scope: Scope) -> VersionOut:
        return cls(id=f"{scope.environments()}/{record.name}/versions/{record.version}", name=record.version,
                   systemData=SystemData(createdAt=record.created_at, lastModifiedAt=record.created_at),
                   properties=VersionProperties.model_validate(version_properties(record)))


class ContainerProperties(BaseModel):
    """An environment container's properties."""

    description: str | None = None
    tags: dict[str, str] = {}
    properties: dict[str, str] = {}
    isArchived: bool
    latestVersion: str = Field(description="the most recently created version")
    nextVersion: str = Field(description="the version a create without one takes next")
    provisioningState: str = "Succeeded"


class ContainerOut(BaseModel):
    """An environment container: a name and its versions."""

    id: str
    name: str
    type: str = CONTAINER_TYPE
    properties: ContainerProperties

    @classmethod
    def of(cls, container: Container, scope: Scope) -> ContainerOut:
        return cls(id=f"{scope.environments()}/{container.name}", name=container.name,
                   properties=ContainerProperties(isArchived=container.archived,
                                                  latestVersion=container.latest_version,
                                                  nextVersion=container.next_version))


class VersionPage(BaseModel):
    """A page of versions; `nextLink` is the next page's URL."""

    value: list[VersionOut]
    nextLink: str | None = None


class ContainerPage(BaseModel):
    """A page of containers; `nextLink` is the next page's URL."""

    value: list[ContainerOut]
    nextLink: str | None = None
