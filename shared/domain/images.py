"""Image references: parsed the way Docker normalises them, so that every registry client agrees."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from shared.domain.errors import InvalidDefinition

DOCKER_HUB = "docker.io"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


class ImageRef(BaseModel):
    """registry/repository[:tag][@digest]."""

    model_config = ConfigDict(frozen=True)

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What a manifest request names: the digest when pinned, else the tag (latest by default)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str) -> ImageRef:
        """The same repository under another tag."""
        return ImageRef(registry=self.registry, repository=self.repository, tag=tag)


def environment_image(registry: str, repository: str, tag: str = "latest") -> ImageRef:
    """Where an environment's image lives: <registry>/azureml/azureml_<32 hex>:<tag>."""
    return ImageRef(registry=registry, repository=repository, tag=tag)


def parse_image(text: str, *, default_registry: str = DOCKER_HUB) -> ImageRef:
    """Parse a reference; names without a registry host go to `default_registry` (Docker Hub normally)."""
    if not text or any(c.isspace() for c in text) or "{{" in text:
        raise InvalidDefinition(f"'{text}' is not a concrete image reference", where="image")
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidDefinition(f"'{digest}' is not a digest", where="image")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = default_registry, rest
    name, colon, tag = path.rpartition(":")
    if not colon or "/" in tag:
        name, tag = path, ""
    if tag and not _TAG.match(tag):
        raise InvalidDefinition(f"'{tag}' is not a valid tag", where="image")
    if registry == DOCKER_HUB and "/" not in name:
        name = f"library/{name}"
    if not name or name != name.lower():
        raise InvalidDefinition(f"'{name}' is not a valid repository name (lower case)", where="image")
    return ImageRef(registry=registry, repository=name, tag=tag or None, digest=digest or None)
