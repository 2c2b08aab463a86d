"""Environment definitions: the Azure ML CLI v2 fields, their kinds, and the rules that bind them."""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.domain import naming
from shared.domain.context import check_dockerfile_path
from shared.domain.errors import InvalidContext, InvalidDefinition
from shared.domain.limits import DEFAULT_LIMITS, DocumentLimits, check_document

KNOWN_FIELDS = frozenset(
    {"$schema", "name", "version", "description", "tags", "properties", "image", "conda_file", "build",
     "inference_config", "os_type", "datastore", "intellectual_property"}
)
OS_TYPES = ("linux", "windows")
_CONTEXT_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Kind(StrEnum):
    """How the image comes about."""

    CURATED = "curated"
    USER_IMAGE = "user_image"
    DOCKER_BUILD = "docker_build"
    SYSTEM_MANAGED = "system_managed"


class BuildSpec(BaseModel):
    """A Docker build context, by the digest of its stored manifest, and the Dockerfile inside it."""

    model_config = ConfigDict(frozen=True)

    context: str
    # As written: Azure ML's anonymous version tells "Dockerfile" from "./Dockerfile" and from nothing.
    dockerfile_path: str | None = None

    @property
    def dockerfile(self) -> str:
        """The Dockerfile's normalised path inside the context."""
        return check_dockerfile_path(self.dockerfile_path or "Dockerfile")


class Definition(BaseModel):
    """What a version holds. Name and version live outside it: they never shape the image."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    image: str | None = None
    build: BuildSpec | None = None
    conda_file: dict[str, Any] | None = None
    inference_config: dict[str, Any] | None = None
    os_type: str = "linux"
    description: str | None = None
    tags: dict[str, str] = {}
    properties: dict[str, str] = {}


class Submission(BaseModel):
    """A definition as submitted: an optional name and version beside it."""

    model_config = ConfigDict(frozen=True)

    name: str | None
    version: str | None
    definition: Definition


def parse_document(doc: object, *, curated: bool = False, where: str = "",
                   limits: DocumentLimits = DEFAULT_LIMITS) -> Submission:
    """Check a definition given as a mapping of Azure ML YAML fields (conda inline, build by digest).
    First its size: nodes (aliases counted as expanded), depth, string lengths, tags and properties."""
    check_document(doc, limits=limits, where=where)
    if not isinstance(doc, dict):
        raise InvalidDefinition("an environment definition is a mapping of fields", where=where or "<document>")
    unknown = sorted({str(key) for key in doc if key not in KNOWN_FIELDS})  # YAML keys may be numbers, null, dates
    if unknown:
        raise InvalidDefinition(
            f"unknown field(s) {', '.join(unknown)}; known fields are {', '.join(sorted(KNOWN_FIELDS))}",
            where=_at(where, unknown[0]),
        )
    image, build, conda = doc.get("image"), doc.get("build"), doc.get("conda_file")
    if image is not None and build is not None:
        raise InvalidDefinition("give exactly one of 'image' and 'build', not both", where=_at(where, "build"))
    if image is None and build is None:
        raise InvalidDefinition("give exactly one of 'image' and 'build'", where=_at(where, "image"))
    if conda is not None and image is None:
        raise InvalidDefinition(
            "'conda_file' goes with 'image' (a system-managed environment); for a build context, "
            "install the conda environment in the Dockerfile",
            where=_at(where, "conda_file"),
        )
    name = None if doc.get("name") is None else naming.check_name(doc["name"], where=_at(where, "name"))
    version = None if doc.get("version") is None else naming.check_version(doc["version"], where=_at(where, "version"))
    kind = Kind.DOCKER_BUILD if image is None else Kind.SYSTEM_MANAGED if conda is not None else Kind.USER_IMAGE
    definition = Definition(
        kind=Kind.CURATED if curated else kind,
        image=None if image is None else _image(image, _at(where, "image")),
        build=None if build is None else _build(build, _at(where, "build")),
        conda_file=None if conda is None else check_conda(conda, where=_at(where, "conda_file")),
        inference_config=_mapping_or_none(doc.get("inference_config"), _at(where, "inference_config")),
        os_type=_os_type(doc.get("os_type"), _at(where, "os_type")),
        description=_text_or_none(doc.get("description"), _at(where, "description")),
        tags=_string_map(doc.get("tags"), _at(where, "tags")),
        properties=_string_map(doc.get("properties"), _at(where, "properties")),
    )
    return Submission(name=name, version=version, definition=definition)


def _at(where: str, field: str) -> str:
    return f"{where}#{field}" if where else field


def _image(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise InvalidDefinition("'image' is an image reference such as 'repo/name:tag' (no spaces)", where=where)
    return value


def _build(value: object, where: str) -> BuildSpec:
    if not isinstance(value, dict):
        raise InvalidDefinition("'build' is a mapping with 'context' (a digest) and 'dockerfile_path'", where=where)
    extra = sorted({str(key) for key in value if key not in {"context", "dockerfile_path", "path"}})
    if extra:
        raise InvalidDefinition(f"unknown build field(s) {', '.join(extra)}", where=f"{where}.{extra[0]}")
    if "path" in value and "context" not in value:
        raise InvalidDefinition(
            "'build.path' is a folder on the client: upload it to the contexts endpoint (the CLI does) "
            "and pass the returned digest as 'build.context'",
            where=f"{where}.path",
        )
    context = value.get("context")
    if not isinstance(context, str) or not _CONTEXT_DIGEST.fullmatch(context):
        raise InvalidDefinition("'build.context' must be a context digest 'sha256:<64 hex>'", where=f"{where}.context")
    dockerfile = value.get("dockerfile_path")
    try:
        if dockerfile is not None:
            check_dockerfile_path(dockerfile, where=f"{where}.dockerfile_path")
    except InvalidContext as error:  # a field of the definition, so reported as one
        raise InvalidDefinition(error.detail, where=f"{where}.dockerfile_path") from error
    return BuildSpec(context=context, dockerfile_path=dockerfile)


def check_conda(value: object, *, where: str = "conda_file") -> dict[str, Any]:
    """A conda specification: a mapping whose channels and dependencies are lists."""
    if isinstance(value, str):
        raise InvalidDefinition(
            f"'{value}' is a file on the client; send the conda specification itself as an inline mapping "
            "(`envhub register` reads the file and does this)", where=where)
    if not isinstance(value, dict) or not value:
        raise InvalidDefinition("the conda specification is a non-empty mapping (channels, dependencies)", where=where)
    _check_plain(value, where)
    channels = value.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise InvalidDefinition("'channels' is a list of channel names", where=f"{where}.channels")
    dependencies = value.get("dependencies", [])
    if not isinstance(dependencies, list):
        raise InvalidDefinition("'dependencies' is a list", where=f"{where}.dependencies")
    for index, item in enumerate(dependencies):
        if isinstance(item, dict):
            for key, packages in item.items():
                if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
                    raise InvalidDefinition(
                        f"'{key}' is a list of package specifications", where=f"{where}.dependencies[{index}]"
                    )
        elif not isinstance(item, str | int | float):
            raise InvalidDefinition("a dependency is a package specification", where=f"{where}.dependencies[{index}]")
    return value


def _mapping_or_none(value: object, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidDefinition("must be a mapping", where=where)
    _check_plain(value, where)
    return value


def _check_plain(value: object, where: str) -> None:
    """Refuse what JSON cannot hold (YAML dates and binary, keys that are not text, NaN and infinities): these
    fields are hashed and stored as JSON, and an unequal NaN would make a repeated registration a conflict.
    The depth is already bounded by check_document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidDefinition(f"the key {key!r} is not text; quote it", where=where)
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidDefinition(f"{value} is not a number JSON can hold", where=where)
    elif value is not None and not isinstance(value, str | int | float):  # bool is an int
        raise InvalidDefinition(f"a {type(value).__name__} value ({value!r:.40}) is not allowed here; quote it to "
                                "make it text", where=where)


def _os_type(value: object, where: str) -> str:
    if value is None:
        return "linux"
    if not isinstance(value, str) or value.lower() not in OS_TYPES:
        raise InvalidDefinition(f"os_type is one of {', '.join(OS_TYPES)}", where=where)
    return value.lower()


def _text_or_none(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidDefinition("must be text", where=where)


def _string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinition("must be a mapping of names to values", where=where)
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, dict | list):
            raise InvalidDefinition("values are plain text, not lists or mappings", where=f"{where}.{key}")
        out[str(key)] = "" if item is None else str(item)
    return out
