"""Azure ML's ARM environment bodies (what azure-ai-ml sends and reads) mapped to and from envhub's definitions."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from shared.domain.definition import Definition
from shared.domain.errors import InvalidDefinition
from shared.domain.records import EnvironmentRecord

PROVIDER = "Microsoft.MachineLearningServices"
VERSION_TYPE = f"{PROVIDER}/workspaces/environments/versions"
CONTAINER_TYPE = f"{PROVIDER}/workspaces/environments"
VIEWS: dict[str, bool | None] = {"activeonly": False, "archivedonly": True, "all": None}  # -> archived filter
AZUREML_PREFIX = "azureml:"
ORDER_NEWEST_FIRST = "createdtime desc"  # what the SDK's label="latest" asks for, and envhub's own order
MUTABLE = ("description", "tags", "properties")  # with isArchived, what a PUT may change on an existing version
_ROUTES = {"livenessRoute": "liveness_route", "readinessRoute": "readiness_route", "scoringRoute": "scoring_route"}
_CONTEXT_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Definition field -> ARM property, for the fields that shape the image (never changed under a version).
IMMUTABLE = {"image": "image", "conda_file": "condaFile", "build": "build", "os_type": "osType",
             "inference_config": "inferenceConfig"}
LoadYaml = Callable[[str, str], Any]  # (text, where) -> value; bounded by the caller (aliases, depth)


@dataclass(frozen=True)
class ArmVersion:
    """An environment version PUT body: the definition in CLI v2 fields, and what ARM adds around it."""

    document: dict[str, Any]
    anonymous: bool
    archived: bool | None  # None: not in the body
    given: frozenset[str]  # which of MUTABLE the body sets (the others keep their stored values)


def plain_name(name: str) -> str:
    """An environment name without the `azureml:` prefix azure-ai-ml leaves on when it resolves `azureml:name@label`
    itself (a prefix no envhub name can carry: ':' is not allowed in names)."""
    return name[len(AZUREML_PREFIX):] if name[:len(AZUREML_PREFIX)].lower() == AZUREML_PREFIX else name


def list_view(value: str | None) -> bool | None:
    """`listViewType` as an archived filter (ActiveOnly when absent, any case)."""
    if value is None:
        return False
    try:
        return VIEWS[value.lower()]
    except KeyError:
        raise InvalidDefinition(f"listViewType '{value}' is none of ActiveOnly, ArchivedOnly, All",
                                where="listViewType") from None


def check_order(value: str | None) -> None:
    """Versions come newest first: `$orderBy` may only ask for that."""
    if value is not None and " ".join(value.lower().split()) != ORDER_NEWEST_FIRST:
        raise InvalidDefinition(f"$orderBy '{value}' is not supported; versions are listed newest first "
                                f"('{ORDER_NEWEST_FIRST}')", where="$orderBy")


def _properties(body: object) -> Mapping[str, Any]:
    props = body.get("properties") if isinstance(body, Mapping) else None
    if not isinstance(props, Mapping):
        raise InvalidDefinition('the body is {"properties": {...}}', where="properties")
    return props


def _flag(props: Mapping[str, Any], key: str) -> bool | None:
    value = props.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidDefinition("must be true or false", where=f"properties.{key}")
    return value


def container_archived(body: object) -> bool | None:
    """The `isArchived` of a container PUT body (None when absent); the rest of it is not kept."""
    return _flag(_properties(body), "isArchived")


def parse_version(body: object, *, load_yaml: LoadYaml) -> ArmVersion:
    """Read a version PUT body. Read-only and unknown properties (id, systemData, environmentType, stage, ...)
    are ignored: an archive round-trip sends back what a GET answered."""
    props = _properties(body)
    doc: dict[str, Any] = {}
    if props.get("image") is not None:
        doc["image"] = props["image"]
    conda = props.get("condaFile")
    if isinstance(conda, str) and conda.strip():
        doc["conda_file"] = load_yaml(conda, "properties.condaFile")  # always a YAML string from the SDK
    elif isinstance(conda, Mapping):
        doc["conda_file"] = dict(conda)
    elif conda not in (None, ""):
        raise InvalidDefinition("condaFile is the conda specification as YAML text", where="properties.condaFile")
    if props.get("build") is not None:
        doc["build"] = _build(props["build"])
    if props.get("osType") is not None:
        doc["os_type"] = props["osType"]
    if props.get("inferenceConfig") is not None:
        doc["inference_config"] = from_arm_inference(props["inferenceConfig"])
    given = frozenset(key for key in MUTABLE if props.get(key) is not None)
    doc.update({key: props[key] for key in given})
    return ArmVersion(document=doc, anonymous=bool(_flag(props, "isAnonymous")),
                      archived=_flag(props, "isArchived"), given=given)


def _build(value: object) -> dict[str, Any]:
    where = "properties.build.contextUri"
    uri = value.get("contextUri") if isinstance(value, Mapping) else None
    if not isinstance(uri, str) or not (_CONTEXT_DIGEST.fullmatch(uri) or uri.startswith("https://")):
        raise InvalidDefinition(
            f"the build context {str(uri)[:200]!r} is neither a folder the SDK uploaded to the workspace's datastore "
            "(https://...) nor an envhub context digest ('sha256:<64 hex>', what `envhub register` or POST "
            "/api/workspaces/{workspace}/contexts returns)", where=where)
    assert isinstance(value, Mapping)
    return {"context": uri, "dockerfile_path": value.get("dockerfilePath")}


def uploaded_context(arm: ArmVersion) -> str | None:
    """The datastore folder a version's build names, when it names one rather than an envhub context digest."""
    build = arm.document.get("build")
    context = build.get("context") if isinstance(build, dict) else None
    return context if isinstance(context, str) and not _CONTEXT_DIGEST.fullmatch(context) else None


def with_context(arm: ArmVersion, digest: str) -> ArmVersion:
    """The version with its build context replaced by the envhub context stored from the upload."""
    return replace(arm, document={**arm.document, "build": {**arm.document["build"], "context": digest}})


def from_arm_inference(value: object) -> Any:
    """ARM's camelCase inference routes as the CLI YAML's snake_case (what azure-ai-ml hashes)."""
    if not isinstance(value, Mapping):
        return value  # parse_document says what is wrong with it
    return {_ROUTES.get(key, key): route for key, route in value.items() if route is not None}


def to_arm_inference(value: Mapping[str, Any]) -> dict[str, Any]:
    """The CLI YAML's inference routes in ARM's camelCase."""
    names = {snake: camel for camel, snake in _ROUTES.items()}
    return {names.get(key, key): route for key, route in value.items()}


def immutable_changes(before: Definition, after: Definition) -> list[str]:
    """The ARM properties that shape the image and differ between two definitions."""
    return [arm for field, arm in IMMUTABLE.items() if getattr(before, field) != getattr(after, field)]


def merged(existing: EnvironmentRecord, definition: Definition, arm: ArmVersion) -> EnvironmentRecord:
    """`existing` with the mutable parts the body sets: a PUT merges, since round-trips omit read-only fields."""
    changes = {key: getattr(definition, key) for key in arm.given}
    record = existing.model_copy(update={"archived": existing.archived if arm.archived is None else arm.archived})
    return record.model_copy(update={"description": existing.description.model_copy(
        update={"definition": existing.definition.model_copy(update=changes)})})


def conda_yaml(conda: Mapping[str, Any]) -> str:
    """The conda specification as YAML text, as azure-ai-ml writes it (sorted keys), so that it hashes the same."""
    return yaml.safe_dump(dict(conda), sort_keys=True)


def version_properties(record: EnvironmentRecord) -> dict[str, Any]:
    """A version's ARM `properties` (absent values left out)."""
    d = record.definition
    props: dict[str, Any] = {
        "description": d.description, "tags": dict(d.tags), "properties": dict(d.properties),
        "isAnonymous": record.anonymous, "isArchived": record.archived, "image": d.image,
        "condaFile": None if d.conda_file is None else conda_yaml(d.conda_file),
        "build": None if d.build is None else {"contextUri": d.build.context,
                                               "dockerfilePath": d.build.dockerfile_path},
        "osType": d.os_type.capitalize(),
        "inferenceConfig": None if d.inference_config is None else to_arm_inference(d.inference_config),
        "environmentType": "Curated" if record.curated else "UserCreated",
        "provisioningState": "Succeeded",
    }
    if props["build"] is not None and props["build"]["dockerfilePath"] is None:
        del props["build"]["dockerfilePath"]
    return {key: value for key, value in props.items() if value is not None}


def workspace_id(subscription: str, resource_group: str, workspace: str) -> str:
    """The ARM id of a workspace, in the casing azure-ai-ml parses (case-sensitively)."""
    return (f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{PROVIDER}"
            f"/workspaces/{workspace}")
