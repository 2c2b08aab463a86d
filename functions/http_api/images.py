"""HTTP routes for images and builds: ensure an environment's image, its details, build records and logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from functions.http_api.deps import services
from functions.http_api.schemas import BuildOut, EnsureOut, ImageDetailsOut, LogOut, problem_responses
from shared.bootstrap import Services

router = APIRouter(tags=["images"], responses=problem_responses(401, 403, 404, 409, 422, 503))
Svc = Annotated[Services, Depends(services)]
VERSION = "/workspaces/{workspace}/environments/{name}/versions/{version}"


@router.post(VERSION + "/image", response_model=EnsureOut,
             responses={202: {"model": EnsureOut, "description": "a build was started or joined"}})
def ensure_image(workspace: str, name: str, version: str, svc: Svc, response: Response) -> EnsureOut:
    """Ensure the image exists: 200 with its digest when cached, 202 with the build that makes it."""
    ensured = svc.images.ensure(workspace=workspace, name=name, version=version)
    if ensured.build is None:
        return EnsureOut(image=ensured.image, cached=True, digest=ensured.digest, status="succeeded")
    response.status_code = 202
    response.headers["Location"] = f"/api/workspaces/{workspace}/builds/{ensured.build.id}"
    return EnsureOut(image=ensured.image, cached=False, build_id=ensured.build.id, status=ensured.build.status,
                     build=BuildOut.of(ensured.build))


@router.get(VERSION + "/image", response_model=ImageDetailsOut)
def image_details(workspace: str, name: str, version: str, svc: Svc) -> ImageDetailsOut:
    """The image's name, whether it exists, its digest, the Dockerfile that builds it and its latest build."""
    d = svc.images.details(workspace=workspace, name=name, version=version)
    return ImageDetailsOut(image=d.image, exists=d.exists, digest=d.digest, dockerfile=d.dockerfile,
                           user_image=d.user_image, build_status=None if d.build is None else d.build.status,
                           build=None if d.build is None else BuildOut.of(d.build),
                           base_digests={} if d.build is None else d.build.base_digests, resolved=d.resolved)


@router.get("/workspaces/{workspace}/builds/{build_id}", response_model=BuildOut)
def get_build(workspace: str, build_id: str, svc: Svc) -> BuildOut:
    """One build record."""
    return BuildOut.of(svc.images.get_build(workspace, build_id))


@router.get("/workspaces/{workspace}/builds/{build_id}/log", response_model=LogOut)
def build_log(workspace: str, build_id: str, svc: Svc,
              offset: Annotated[int, Query(ge=0, description="first line to return")] = 0) -> LogOut:
    """Log lines from `offset`; poll with `next_offset` until `finished`."""
    build, lines = svc.images.read_log(workspace, build_id, offset)
    return LogOut(build_id=build.id, status=build.status, lines=lines, next_offset=offset + len(lines),
                  finished=build.status.finished)


@router.post("/workspaces/{workspace}/builds/{build_id}/cancel", response_model=BuildOut)
def cancel_build(workspace: str, build_id: str, svc: Svc) -> BuildOut:
    """Cancel a build: at once when queued, within a second or two when running."""
    return BuildOut.of(svc.images.cancel(workspace, build_id))
