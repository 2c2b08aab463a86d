"""Azure ML's job operations (command jobs, ARM semantics) over envhub's JobService: the same job records."""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.arm_jobs import parse_job, retagged, tags_of
from shared.domain.errors import VersionConflict
from shared.domain.records import EnvironmentRecord, JobRecord
from shared.services.environments import EnvironmentService
from shared.services.jobs import JobService


@dataclass(frozen=True)
class ArmJobResult:
    """A job, the environment version it names, and whether this request recorded it."""

    job: JobRecord
    environment: EnvironmentRecord
    created: bool


class ArmJobs:
    """Command jobs by name: a PUT records one (201) or repeats it (200, same content, its tags replaced); other
    content under a recorded name is a 409, since envhub keeps no job history to update."""

    def __init__(self, *, jobs: JobService, environments: EnvironmentService) -> None:
        self.jobs = jobs
        self.environments = environments

    def put(self, *, subscription: str, resource_group: str, workspace: str, name: str,
            body: object) -> ArmJobResult:
        """Record a command job under its ARM name (envhub's job id), its environment resolved to a version."""
        arm = parse_job(body, name=name, subscription=subscription, resource_group=resource_group,
                        workspace=workspace)
        existing = self.jobs.store.get_job(workspace, name)
        if existing is None:
            try:
                job, environment = self.jobs.submit(workspace=workspace,
                                                    job={**arm.spec, "environment": arm.environment})
                return ArmJobResult(job, environment, True)
            except VersionConflict:
                existing = self.jobs.store.get_job(workspace, name)  # a concurrent PUT of this name won
                if existing is None:
                    raise
        environment = self.jobs.resolve_reference(workspace, arm.environment)
        same_environment = (existing.environment_name, existing.environment_version) == (environment.name,
                                                                                         environment.version)
        if not same_environment or retagged(existing.spec, {}) != retagged(arm.spec, {}):
            raise VersionConflict(f"a job named '{name}' exists in workspace '{workspace}' with other content; only "
                                  "its tags may change, so submit it under a new name", where="name")
        tags = tags_of(arm.spec)
        if tags != tags_of(existing.spec):  # ARM: the tags of a PUT replace those of the existing job
            updated = self.jobs.store.update_job(
                workspace, name, lambda job: job.model_copy(update={"spec": retagged(job.spec, tags)}))
            existing = updated or existing
        return ArmJobResult(existing, environment, False)

    def get(self, *, workspace: str, name: str) -> ArmJobResult:
        """A recorded job (from this API or envhub's own) and its environment version."""
        job = self.jobs.get(workspace=workspace, job_id=name)
        environment = self.environments.get(workspace=workspace, name=job.environment_name,
                                            version=job.environment_version)
        return ArmJobResult(job, environment, False)
