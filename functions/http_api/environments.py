"""HTTP routes for environments: register, read, list, diff, archive."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from functions.http_api.audit import audited
from functions.http_api.auth import ANYONE, needs
from functions.http_api.deps import next_link, services
from functions.http_api.schemas import (
    BODY_PROBLEMS,
    DefinitionIn,
    DescriptionOut,
    DiffOut,
    EnvironmentOut,
    EnvironmentPage,
    problem_responses,
)
from shared.bootstrap import Services

router = APIRouter(tags=["environments"], responses=problem_responses(401, 403, 404, 409, 422))
Svc = Annotated[Services, Depends(services)]
Top = Annotated[int, Query(alias="$top", ge=1, le=1000)]
Skip = Annotated[str | None, Query(alias="$skiptoken")]
BASE = "/workspaces/{workspace}/environments"


@router.post("/hash", response_model=DescriptionOut, tags=["hash"], responses=BODY_PROBLEMS)
@needs(ANYONE)
@audited(False)
def hash_definition(body: DefinitionIn, svc: Svc) -> DescriptionOut:
    """The hash, image name and anonymous version of a definition; nothing is stored."""
    return DescriptionOut.of(svc.environments.describe_document(body.document()))


@router.post(BASE + "/{name}/versions", status_code=201, response_model=EnvironmentOut, responses=BODY_PROBLEMS)
def register(workspace: str, name: str, body: DefinitionIn, svc: Svc, response: Response) -> EnvironmentOut:
    """Register a version: the body's version, or the next integer when it has none."""
    result = svc.environments.register(workspace=workspace, name=name, document=body.document())
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return EnvironmentOut.of_record(result.record)


@router.put(BASE + "/{name}/versions/{version}", status_code=201, response_model=EnvironmentOut,
            responses=BODY_PROBLEMS)
def register_version(workspace: str, name: str, version: str, body: DefinitionIn, svc: Svc,
                     response: Response) -> EnvironmentOut:
    """Register an explicit version; the same definition again is a no-op (200), another is a 409."""
    result = svc.environments.register(workspace=workspace, name=name, document=body.document(), version=version)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return EnvironmentOut.of_record(result.record)


@router.get(BASE, response_model=EnvironmentPage)
def list_environments(workspace: str, request: Request, svc: Svc, top: Top = 100, skip: Skip = None
                      ) -> EnvironmentPage:
    """The latest version of each environment; anonymous and archived ones are hidden."""
    page = svc.environments.list_latest(workspace=workspace, top=top, cursor=skip)
    return EnvironmentPage(value=[EnvironmentOut.of_record(r) for r in page.items],
                           nextLink=next_link(request, page.next_cursor))


@router.get(BASE + "/{name}/versions", response_model=EnvironmentPage)
def history(workspace: str, name: str, request: Request, svc: Svc, top: Top = 100, skip: Skip = None
            ) -> EnvironmentPage:
    """Every version of one environment, newest first (archived ones included, marked)."""
    page = svc.environments.history(workspace=workspace, name=name, top=top, cursor=skip)
    return EnvironmentPage(value=[EnvironmentOut.of_record(r) for r in page.items],
                           nextLink=next_link(request, page.next_cursor))


@router.get(BASE + "/{name}/versions/{version}", response_model=EnvironmentOut)
def get_version(workspace: str, name: str, version: str, svc: Svc) -> EnvironmentOut:
    """One version; `latest` names the newest version that is not archived."""
    return EnvironmentOut.of_record(svc.environments.get(workspace=workspace, name=name, version=version))


@router.get(BASE + "/{name}/versions/{version}/diff", response_model=DiffOut)
def diff_versions(workspace: str, name: str, version: str, svc: Svc,
                  against: Annotated[str, Query(description="the version to compare with")]) -> DiffOut:
    """Fields that changed from `against` to `version`, and whether the image hash did."""
    changes, hash_changed = svc.environments.diff(workspace=workspace, name=name, version=version, against=against)
    return DiffOut(name=name, version=version, against=against, hash_changed=hash_changed, changes=changes)


@router.post(BASE + "/{name}/versions/{version}/archive", response_model=EnvironmentOut)
def archive(workspace: str, name: str, version: str, svc: Svc) -> EnvironmentOut:
    """Hide a version from listings and from `latest`; it stays readable by version."""
    record = svc.environments.set_archived(workspace=workspace, name=name, version=version, archived=True)
    return EnvironmentOut.of_record(record)


@router.post(BASE + "/{name}/versions/{version}/restore", response_model=EnvironmentOut)
def restore(workspace: str, name: str, version: str, svc: Svc) -> EnvironmentOut:
    """Undo an archive."""
    record = svc.environments.set_archived(workspace=workspace, name=name, version=version, archived=False)
    return EnvironmentOut.of_record(record)


@router.get("/curated-environments", response_model=EnvironmentPage, tags=["curated"])
@needs(ANYONE)
def curated(svc: Svc) -> EnvironmentPage:
    """The curated catalog (read-only)."""
    return EnvironmentPage(value=[EnvironmentOut.of_record(r) for r in svc.catalog.all()])
