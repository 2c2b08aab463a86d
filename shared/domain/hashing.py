"""The image cache key: sha256 over a canonical form of everything that shapes an image."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.domain.context import ContextManifest, included_files
from shared.domain.definition import Definition, Kind

# Part of the canonical form: changing anything in it changes every hash and so invalidates every
# cached image. Bump it whenever the canonical form changes.
SCHEME = "envhub-hash/1"
IMAGE_REPOSITORY_PREFIX = "azureml/azureml_"


class ResolvedContext(BaseModel):
    """A stored build context with the two files the hash needs read."""

    model_config = ConfigDict(frozen=True)

    manifest: ContextManifest
    dockerignore: str | None = None


def canonical_form(definition: Definition, context: ResolvedContext | None = None) -> dict[str, Any]:
    """Everything that shapes the image, and nothing that does not (name, version, description, tags)."""
    form: dict[str, Any] = {
        "scheme": SCHEME,
        "kind": build_kind(definition).value,
        "image": definition.image,
        "conda": definition.conda_file,
        "inference_config": definition.inference_config,
        "os_type": definition.os_type,
        "build": None,
    }
    if definition.build is not None:
        if context is None:
            raise ValueError("a build definition is hashed together with its context")
        dockerfile = definition.build.dockerfile
        files = included_files(context.manifest, context.dockerignore, dockerfile)
        form["build"] = {
            "dockerfile_path": dockerfile,
            "files": [[f.path, f.executable, f.sha256] for f in files],
        }
    return form


def build_kind(definition: Definition) -> Kind:
    """The kind as far as the image is concerned: a curated environment is built like any Docker build,
    so a copy registered under a new name shares its image."""
    if definition.kind is not Kind.CURATED:
        return definition.kind
    if definition.build is not None:
        return Kind.DOCKER_BUILD
    return Kind.SYSTEM_MANAGED if definition.conda_file is not None else Kind.USER_IMAGE


def canonical_bytes(form: dict[str, Any]) -> bytes:
    """JSON with sorted mapping keys and untouched sequence order: YAML layout and key order vanish,
    dependency and channel order stay."""
    return json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def definition_hash(definition: Definition, context: ResolvedContext | None = None) -> str:
    """The 64-hex cache key of a definition."""
    return hashlib.sha256(canonical_bytes(canonical_form(definition, context))).hexdigest()


def image_name(hash_hex: str) -> str:
    """Azure ML's repository name for an environment image: azureml/azureml_<32 hex>."""
    return IMAGE_REPOSITORY_PREFIX + hash_hex[:32]
