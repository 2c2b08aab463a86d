"""ARM routes for Azure ML command jobs: what `MLClient.jobs.create_or_update` and `.get` call."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from functions.http_api.arm import errors
from functions.http_api.arm.environments import At, Svc
from functions.http_api.arm.shapes import Scope, SystemData
from shared.domain.arm_jobs import JOB_TYPE, job_id, job_properties
from shared.services.arm_jobs import ArmJobResult, ArmJobs

JOB = ("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
       "Microsoft.MachineLearningServices/workspaces/{workspace}/jobs/{name}")
router = APIRouter(tags=["azure-ml"], responses=errors.responses(400, 401, 403, 404, 503))


class JobIn(BaseModel):
    """A job PUT: `properties` of a command job (jobType 'Command', command, environmentId, computeId, ...)."""

    model_config = ConfigDict(extra="allow")

    properties: dict[str, Any] = Field(description="jobType 'Command', command, environmentId (an environment "
                                                   "version's ARM id), computeId, displayName, tags, ...")


class JobOut(BaseModel):
    """A recorded command job; `status` is always NotStarted (envhub does not run jobs)."""

    id: str
    name: str
    type: str = JOB_TYPE
    systemData: SystemData
    properties: dict[str, Any]

    @classmethod
    def of(cls, result: ArmJobResult, scope: Scope) -> JobOut:
        env = result.environment
        environment_id = f"{scope.environments()}/{env.name}/versions/{env.version}"
        job = result.job
        return cls(id=job_id(scope.subscription, scope.resource_group, scope.workspace, job.id), name=job.id,
                   systemData=SystemData(createdAt=job.created_at, lastModifiedAt=job.created_at),
                   properties=job_properties(job, environment_id))


def arm_jobs(svc: Svc) -> ArmJobs:
    """The ARM job use cases over the app's job service."""
    return ArmJobs(jobs=svc.jobs, environments=svc.environments)


Arm = Annotated[ArmJobs, Depends(arm_jobs)]


@router.put(JOB, status_code=201, response_model=JobOut,
            responses={200: {"model": JobOut, "description": "the job was recorded with this content already"},
                       **errors.responses(409, 413)})
def put_job(name: str, body: JobIn, at: At, arm: Arm, response: Response) -> JobOut:
    """Record a command job (201) whose environment is a version of this workspace; the same content again is a
    200, other content under the name a 409. The job is envhub's job `name`; it is recorded, never run."""
    result = arm.put(subscription=at.subscription, resource_group=at.resource_group, workspace=at.workspace,
                     name=name, body=body.model_dump())
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return JobOut.of(result, at)


@router.get(JOB, response_model=JobOut)
def get_job(name: str, at: At, arm: Arm) -> JobOut:
    """A recorded job, including one submitted through envhub's own job API."""
    return JobOut.of(arm.get(workspace=at.workspace, name=name), at)
