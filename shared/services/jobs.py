"""Job submissions: resolve or register the job's environment and remember which version it used."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.domain.definition import parse_document
from shared.domain.errors import InvalidDefinition, NotFound, VersionConflict
from shared.domain.records import EnvironmentRecord, JobRecord
from shared.ports import EnvironmentStore
from shared.services.environments import LATEST, EnvironmentService

# azureml:name:version, azureml:name@latest, and the registry form of curated environments.
_SHORT = re.compile(r"^(?:azureml:)?(?P<name>[^:@/]+)(?::(?P<version>[^:@/]+)|@(?P<label>[^:@/]+))$")
_REGISTRY = re.compile(
    r"^azureml://registries/[^/]+/environments/(?P<name>[^/]+)/(?:versions/(?P<version>[^/]+)|labels/(?P<label>[^/]+))$"
)


class JobService:
    """Submits jobs (recording them) and reads them back."""

    def __init__(self, *, store: EnvironmentStore, environments: EnvironmentService,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.environments = environments
        self.clock = clock

    def submit(self, *, workspace: str, job: dict[str, Any]) -> tuple[JobRecord, EnvironmentRecord]:
        """Resolve the job's environment (a reference, or an inline one registered anonymously)."""
        environment = job.get("environment")
        if isinstance(environment, str):
            record = self.resolve_reference(workspace, environment)
        elif isinstance(environment, dict):
            inline = {k: v for k, v in environment.items() if k not in ("name", "version")}
            definition = parse_document(inline, where="environment").definition
            record = self.environments.register_anonymous(workspace=workspace, definition=definition,
                                                          where="environment").record
        else:
            raise InvalidDefinition("a job names its environment: 'azureml:name:version', 'azureml:name@latest' "
                                    "or an inline definition", where="environment")
        spec = {k: v for k, v in job.items() if k != "environment"}
        record_job = JobRecord(workspace=workspace, id=str(job.get("name") or uuid.uuid4()),
                               environment_name=record.name, environment_version=record.version,
                               environment_hash=record.description.hash, created_at=self.clock(), spec=spec)
        if not self.store.insert_job(record_job):
            raise VersionConflict(f"a job named '{record_job.id}' already exists in workspace '{workspace}'",
                                  where="name")
        return record_job, record

    def resolve_reference(self, workspace: str, reference: str) -> EnvironmentRecord:
        """The environment version a reference names."""
        match = _REGISTRY.match(reference) or _SHORT.match(reference)
        if match is None:
            raise InvalidDefinition(f"'{reference}' is not an environment reference such as 'azureml:name:version' "
                                    "or 'azureml:name@latest'", where="environment")
        label = match.group("label")
        if label is not None and label != LATEST:
            raise InvalidDefinition(f"unknown label '{label}'; the label is 'latest'", where="environment")
        version = match.group("version") or LATEST
        return self.environments.get(workspace=workspace, name=match.group("name"), version=version)

    def get(self, *, workspace: str, job_id: str) -> JobRecord:
        """A recorded job."""
        job = self.store.get_job(workspace, job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}' in workspace '{workspace}'", where=job_id)
        return job
