"""HTTP routes for deployments: the assets that run an environment's image (set, read, list, delete)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from functions.http_api.deps import next_link, services
from functions.http_api.schemas import BODY_PROBLEMS, problem_responses
from shared.bootstrap import Services
from shared.domain.scans import Deployment

router = APIRouter(tags=["deployments"], responses=problem_responses(401, 403, 404, 422))
Svc = Annotated[Services, Depends(services)]
Top = Annotated[int, Query(alias="$top", ge=1, le=1000)]
Skip = Annotated[str | None, Query(alias="$skiptoken")]
BASE = "/workspaces/{workspace}/deployments"


class DeploymentIn(BaseModel):
    """What a deployment runs; without `image_digest`, the environment's current image digest is recorded."""

    model_config = ConfigDict(extra="forbid")

    environment: str = Field(description="'name:version', 'azureml:name:version' or 'name@latest' (stored as the "
                                         "version it names)")
    image_digest: str | None = Field(None, description="sha256:<64 hex>; the environment's current image when left "
                                                       "out", examples=["sha256:" + "0" * 64])
    endpoint: str | None = Field(None, description="the endpoint the deployment serves behind")
    kind: Literal["online", "batch"] = Field("online", description="an online or a batch deployment")


class DeploymentOut(BaseModel):
    """A deployment and the image it runs."""

    workspace: str
    name: str
    environment: str = Field(description="name:version")
    image_digest: str | None
    endpoint: str | None
    kind: Literal["online", "batch"]
    needs_redeploy: bool = Field(description="a scan found that the image it runs has a newer base or a patch")
    redeploy_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, d: Deployment) -> DeploymentOut:
        return cls(workspace=d.workspace, name=d.name, environment=d.environment, image_digest=d.image_digest,
                   endpoint=d.endpoint, kind=d.kind, needs_redeploy=d.needs_redeploy,
                   redeploy_reason=d.redeploy_reason, created_at=d.created_at, updated_at=d.updated_at)


class DeploymentPage(BaseModel):
    """An Azure-style page."""

    value: list[DeploymentOut]
    nextLink: str | None = None


@router.put(BASE + "/{name}", status_code=201, response_model=DeploymentOut,
            responses={200: {"model": DeploymentOut, "description": "an existing deployment was replaced"},
                       201: {"description": "the deployment was created"},
                       **problem_responses(409, 503), **BODY_PROBLEMS})
def set_deployment(workspace: str, name: str, body: DeploymentIn, svc: Svc, response: Response) -> DeploymentOut:
    """Create (201) or replace (200) a deployment. 404 when the environment is not registered; 409 when no
    `image_digest` is given and the environment's image does not exist yet; 503 when the registry cannot answer.
    Setting a deployment clears its redeploy flag."""
    result = svc.deployments.set(workspace=workspace, name=name, environment=body.environment,
                                 image_digest=body.image_digest, endpoint=body.endpoint, kind=body.kind)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return DeploymentOut.of(result.deployment)


@router.get(BASE, response_model=DeploymentPage)
def list_deployments(
    workspace: str, request: Request, svc: Svc, top: Top = 100, skip: Skip = None,
    needs_redeploy: Annotated[bool | None, Query(description="only those flagged for redeploy (true) or not (false)"
                                                 )] = None,
) -> DeploymentPage:
    """A workspace's deployments by name; follow `nextLink` for the next page."""
    page = svc.deployments.list(workspace=workspace, top=top, cursor=skip, needs_redeploy=needs_redeploy)
    return DeploymentPage(value=[DeploymentOut.of(d) for d in page.items],
                          nextLink=next_link(request, page.next_cursor))


@router.get(BASE + "/{name}", response_model=DeploymentOut)
def get_deployment(workspace: str, name: str, svc: Svc) -> DeploymentOut:
    """One deployment."""
    return DeploymentOut.of(svc.deployments.get(workspace=workspace, name=name))


@router.delete(BASE + "/{name}", status_code=204, response_class=Response,
               responses={204: {"description": "deleted"}})
def delete_deployment(workspace: str, name: str, svc: Svc) -> Response:
    """Remove a deployment (404 when there is none)."""
    svc.deployments.delete(workspace=workspace, name=name)
    return Response(status_code=204)
