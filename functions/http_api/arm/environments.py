"""ARM routes for Azure ML environment containers and versions: what `MLClient.environments` calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from functions.http_api.arm import errors
from functions.http_api.arm.shapes import (
    ContainerIn,
    ContainerOut,
    ContainerPage,
    Scope,
    VersionIn,
    VersionOut,
    VersionPage,
)
from functions.http_api.deps import services
from shared.bootstrap import Services
from shared.services.arm_environments import ArmEnvironments

ENVIRONMENTS = ("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
                "Microsoft.MachineLearningServices/workspaces/{workspace}/environments")
NAME = ENVIRONMENTS + "/{name}"
VERSION = NAME + "/versions/{version}"
router = APIRouter(tags=["azure-ml"], responses=errors.responses(400, 401, 403, 404, 503))
Svc = Annotated[Services, Depends(services)]
View = Annotated[str | None, Query(alias="listViewType", description="ActiveOnly (default), ArchivedOnly or All")]
Top = Annotated[int | None, Query(alias="$top", ge=1, description="at most this many items per page")]
Skip = Annotated[str | None, Query(alias="$skip", description="the page token of a nextLink")]
OrderBy = Annotated[str | None, Query(alias="$orderBy", description="only 'createdtime desc' (newest first)")]
BODY = errors.responses(409, 413)


def scope(subscription: str, resource_group: str, workspace: str, svc: Svc) -> Scope:
    """The path's scope. The subscription and resource group are only checked against ENVHUB_ARM_SUBSCRIPTION and
    ENVHUB_ARM_RESOURCE_GROUP when those are set; the workspace is envhub's workspace."""
    settings = svc.settings
    if settings.arm_subscription is not None and subscription != settings.arm_subscription:
        raise errors.SubscriptionNotFound(f"the subscription '{subscription}' is not served here",
                                          where="subscription")
    if settings.arm_resource_group is not None and resource_group.lower() != settings.arm_resource_group.lower():
        raise errors.ResourceGroupNotFound(f"the resource group '{resource_group}' is not served here",
                                           where="resourceGroup")  # resource group names are case-insensitive
    return Scope(subscription=subscription, resource_group=resource_group, workspace=workspace)


def arm_environments(svc: Svc) -> ArmEnvironments:
    """The ARM use cases over the app's environment service."""
    return ArmEnvironments(environments=svc.environments, datastores=svc.datastores,
                           page_size=svc.settings.arm_page_size)


At = Annotated[Scope, Depends(scope)]
Arm = Annotated[ArmEnvironments, Depends(arm_environments)]


def _next(request: Request, cursor: str | None) -> str | None:
    """The next page's URL: this one with `$skip` set (azure-core keeps its query and swaps api-version)."""
    return None if cursor is None else str(request.url.include_query_params(**{"$skip": cursor}))


@router.get(ENVIRONMENTS, response_model=ContainerPage, response_model_exclude_none=True)
def list_containers(at: At, arm: Arm, request: Request, view: View = None, top: Top = None, skip: Skip = None
                    ) -> ContainerPage:
    """Environment containers by name; anonymous environments are never listed."""
    page = arm.containers(workspace=at.workspace, view=view, top=top, cursor=skip)
    return ContainerPage(value=[ContainerOut.of(c, at) for c in page.items], nextLink=_next(request, page.next_cursor))


@router.get(NAME, response_model=ContainerOut, response_model_exclude_none=True)
def get_container(name: str, at: At, arm: Arm) -> ContainerOut:
    """One container: `latestVersion` (newest created) and `nextVersion` drive the SDK's create without version."""
    return ContainerOut.of(arm.container(workspace=at.workspace, name=name), at)


@router.put(NAME, response_model=ContainerOut, response_model_exclude_none=True, responses=BODY)
def put_container(name: str, body: ContainerIn, at: At, arm: Arm) -> ContainerOut:
    """Archive (`isArchived` true) or restore every version of a name; the rest of the body is not kept."""
    return ContainerOut.of(arm.put_container(workspace=at.workspace, name=name, body=body.model_dump()), at)


@router.get(NAME + "/versions", response_model=VersionPage, response_model_exclude_none=True)
def list_versions(name: str, at: At, arm: Arm, request: Request, view: View = None, order_by: OrderBy = None,
                  top: Top = None, skip: Skip = None) -> VersionPage:
    """Versions newest first; `$orderBy=createdtime desc&$top=1` is the SDK's label 'latest'."""
    page = arm.versions(workspace=at.workspace, name=name, view=view, order_by=order_by, top=top, cursor=skip)
    return VersionPage(value=[VersionOut.of(r, at) for r in page.items], nextLink=_next(request, page.next_cursor))


@router.get(VERSION, response_model=VersionOut, response_model_exclude_none=True)
def get_version(name: str, version: str, at: At, arm: Arm) -> VersionOut:
    """One version."""
    return VersionOut.of(arm.get_version(workspace=at.workspace, name=name, version=version), at)


@router.put(VERSION, status_code=201, response_model=VersionOut, response_model_exclude_none=True,
            responses={200: {"model": VersionOut, "description": "the version existed; description, tags, "
                                                                 "properties and isArchived were merged"}, **BODY})
def put_version(name: str, version: str, body: VersionIn, at: At, arm: Arm, response: Response) -> VersionOut:
    """Create a version (201), or update what may change of an existing one (200); changed image, condaFile,
    build, osType or inferenceConfig is a 409. Versions of CliV2AnonymousEnvironment must carry the anonymous
    version Azure ML computes from their content."""
    result = arm.put_version(workspace=at.workspace, name=name, version=version, body=body.model_dump())
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return VersionOut.of(result.record, at)
