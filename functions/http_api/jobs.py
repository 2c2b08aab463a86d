"""HTTP routes for job submissions and build-context uploads."""

from __future__ import annotations

import tempfile
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from functions.http_api.deps import services
from functions.http_api.schemas import ContextOut, JobIn, JobOut, problem_responses
from shared.bootstrap import Services
from shared.domain.errors import ContextTooLarge, InvalidContext

router = APIRouter(responses=problem_responses(400, 401, 403, 404, 409, 413, 422))
Svc = Annotated[Services, Depends(services)]
ARCHIVE_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar+gzip", "application/octet-stream")


@router.post("/workspaces/{workspace}/jobs", status_code=201, response_model=JobOut, tags=["jobs"])
def submit_job(workspace: str, body: JobIn, svc: Svc) -> JobOut:
    """Submit a job: its environment is resolved, or registered anonymously when given inline."""
    job, env = svc.jobs.submit(workspace=workspace, job=body.model_dump(exclude_none=True))
    return JobOut.of(job, env)


@router.get("/workspaces/{workspace}/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
def get_job(workspace: str, job_id: str, svc: Svc) -> JobOut:
    """A job and the environment version it used."""
    job = svc.jobs.get(workspace=workspace, job_id=job_id)
    env = svc.environments.get(workspace=workspace, name=job.environment_name, version=job.environment_version)
    return JobOut.of(job, env)


@router.post(
    "/workspaces/{workspace}/contexts", status_code=201, response_model=ContextOut, tags=["contexts"],
    openapi_extra={"requestBody": {"required": True, "content": {"application/gzip": {
        "schema": {"type": "string", "format": "binary"}}}}},
)
async def upload_context(workspace: str, request: Request, svc: Svc) -> ContextOut:
    """Upload a build context as a tar.gz; regular files and folders only, no path leaves the context."""
    limit = svc.settings.max_upload_bytes
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media not in ARCHIVE_TYPES:
        raise InvalidContext(f"send the context as application/gzip (a tar.gz), not '{media or 'nothing'}'",
                             where="content-type")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ContextTooLarge(f"the upload is {declared} bytes; the limit is {limit}", where="<body>")
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise ContextTooLarge(f"the upload exceeds the limit of {limit} bytes", where="<body>")
            spool.write(chunk)
        spool.seek(0)
        manifest = await run_in_threadpool(svc.contexts.upload, spool)  # type: ignore[arg-type]
    return ContextOut(digest=manifest.digest, files=len(manifest.files), size=manifest.size)
