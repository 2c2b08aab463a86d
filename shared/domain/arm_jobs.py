"""Azure ML's ARM command-job bodies (what azure-ai-ml sends and reads) mapped to and from envhub's job records."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain.arm import PROVIDER, plain_name, workspace_id
from shared.domain.errors import InvalidDefinition, NotFound
from shared.domain.records import JobRecord

JOB_TYPE = f"{PROVIDER}/workspaces/jobs"
COMMAND = "Command"
STATUS = "NotStarted"  # envhub records jobs and their environments; it never runs them
READ_ONLY = ("status", "services", "environmentId")  # answered by envhub, never kept from a body
_ENVIRONMENT_ID = re.compile(
    rf"^/?subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/{PROVIDER}"
    r"/workspaces/(?P<workspace>[^/]+)/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class ArmJob:
    """A command job PUT body: the environment it names, and the job as envhub records it (its `spec`)."""

    environment: str  # an envhub reference: 'azureml:name:version' or a registry id
    spec: dict[str, Any]


def parse_job(body: object, *, name: str, subscription: str, resource_group: str, workspace: str) -> ArmJob:
    """Read a job PUT body. Only command jobs are recorded; their environment is an id of this workspace."""
    props = body.get("properties") if isinstance(body, Mapping) else None
    if not isinstance(props, Mapping):
        raise InvalidDefinition('the body is {"properties": {...}}', where="properties")
    if props.get("jobType") != COMMAND:
        raise InvalidDefinition(f"jobType '{props.get('jobType')}' is not recorded here; envhub records command "
                                "jobs (jobType 'Command')", where="properties.jobType")
    command = props.get("command")
    if not isinstance(command, str) or not command.strip():
        raise InvalidDefinition("a command job has a command", where="properties.command")
    environment = _reference(props.get("environmentId"), subscription, resource_group, workspace)
    arm = {key: value for key, value in props.items() if key not in READ_ONLY and value is not None}
    spec = {"name": name, "command": command, "display_name": props.get("displayName"),
            "compute": props.get("computeId"), "arm": arm}
    return ArmJob(environment=environment, spec={k: v for k, v in spec.items() if v is not None})


def _reference(value: object, subscription: str, resource_group: str, workspace: str) -> str:
    where = "properties.environmentId"
    if not isinstance(value, str) or not value:
        raise InvalidDefinition("a command job names its environment by id", where=where)
    if value.startswith("azureml://registries/"):
        return value  # a curated environment, as the SDK names one
    match = _ENVIRONMENT_ID.match(value)
    if match is None:
        raise InvalidDefinition(f"'{value[:300]}' is not an environment version id such as '.../workspaces/"
                                "{workspace}/environments/{name}/versions/{version}'", where=where)
    here = (subscription, resource_group.lower(), workspace)
    if (match["subscription"], match["group"].lower(), match["workspace"]) != here:
        raise NotFound(f"the environment '{value[:300]}' is not in this workspace ('{workspace}')", where=where)
    return f"azureml:{plain_name(match['name'])}:{match['version']}"


def tags_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ARM tags a recorded job carries."""
    arm = spec.get("arm")
    tags = arm.get("tags") if isinstance(arm, Mapping) else None
    return dict(tags) if isinstance(tags, Mapping) else {}


def retagged(spec: Mapping[str, Any], tags: Mapping[str, Any]) -> dict[str, Any]:
    """A job's spec with its tags replaced, as ARM's PUT of an existing job does (absent tags: none)."""
    arm = {key: value for key, value in (spec.get("arm") or {}).items() if key != "tags"}
    return {**spec, "arm": {**arm, **({"tags": dict(tags)} if tags else {})}}


def job_properties(job: JobRecord, environment_id: str) -> dict[str, Any]:
    """A job's ARM `properties`: what its PUT sent (or envhub's own fields), with its environment and status."""
    spec = job.spec
    props: dict[str, Any] = {"jobType": COMMAND, "command": spec.get("command"),
                             "displayName": spec.get("display_name"), "computeId": spec.get("compute")}
    arm = spec.get("arm")
    if isinstance(arm, Mapping):
        props.update(arm)
    props.update(environmentId=environment_id, status=STATUS)
    return {key: value for key, value in props.items() if value is not None}


def job_id(subscription: str, resource_group: str, workspace: str, name: str) -> str:
    """The ARM id of a job, in the casing azure-ai-ml parses."""
    return f"{workspace_id(subscription, resource_group, workspace)}/jobs/{name}"
