"""HTTP routes of the patch watch: run and read scans, list and handle findings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from functions.http_api.deps import next_link, services
from functions.http_api.environments import Skip, Top
from functions.http_api.scan_schemas import FindingOut, FindingPage, ScanOut, ScanPage
from functions.http_api.schemas import BODY_PROBLEMS, problem_responses
from shared.bootstrap import Services
from shared.domain.scans import FindingStatus

router = APIRouter(responses=problem_responses(401, 403, 404, 422, 503))
Svc = Annotated[Services, Depends(services)]
FINDINGS = "/workspaces/{workspace}/findings"


@router.post("/patch-scans", status_code=202, response_model=ScanOut, tags=["patch watch"])
def start_scan(svc: Svc, response: Response) -> ScanOut:
    """Run a scan now: one message per base repository; follow it at the Location."""
    scan = svc.scanning.start("api")
    response.headers["Location"] = f"/api/patch-scans/{scan.id}"
    return ScanOut.of(scan)


@router.get("/patch-scans", response_model=ScanPage, tags=["patch watch"])
def list_scans(request: Request, svc: Svc, top: Top = 20, skip: Skip = None) -> ScanPage:
    """Scans, newest first."""
    page = svc.scanning.list_scans(top=top, cursor=skip)
    return ScanPage(value=[ScanOut.of(s) for s in page.items], nextLink=next_link(request, page.next_cursor))


@router.get("/patch-scans/{scan_id}", response_model=ScanOut, tags=["patch watch"])
def get_scan(scan_id: str, svc: Svc) -> ScanOut:
    """One scan: its progress, the repositories that failed, its new findings and redeploys."""
    return ScanOut.of(svc.scanning.get(scan_id))


@router.get(FINDINGS, response_model=FindingPage, tags=["patch watch"])
def list_findings(workspace: str, request: Request, svc: Svc, top: Top = 100, skip: Skip = None,
                  status: Annotated[list[FindingStatus] | None, Query(description="only these statuses")] = None,
                  ) -> FindingPage:
    """A workspace's findings by environment (all statuses unless asked)."""
    page = svc.findings.list_findings(workspace=workspace, top=top, cursor=skip,
                             statuses=frozenset(status) if status else None)
    return FindingPage(value=[FindingOut.of(f) for f in page.items], nextLink=next_link(request, page.next_cursor))


@router.get(FINDINGS + "/{finding_id}", response_model=FindingOut, tags=["patch watch"])
def get_finding(workspace: str, finding_id: str, svc: Svc) -> FindingOut:
    """One finding."""
    return FindingOut.of(svc.findings.get(workspace=workspace, finding_id=finding_id))


@router.post(FINDINGS + "/{finding_id}/acknowledge", response_model=FindingOut, tags=["patch watch"])
def acknowledge(workspace: str, finding_id: str, svc: Svc) -> FindingOut:
    """Seen and being handled: still listed, still flags deployments."""
    return FindingOut.of(svc.findings.acknowledge(workspace=workspace, finding_id=finding_id))


@router.post(FINDINGS + "/{finding_id}/snooze", response_model=FindingOut, tags=["patch watch"],
             responses=BODY_PROBLEMS)
def snooze(workspace: str, finding_id: str, svc: Svc,
           until: Annotated[datetime, Body(embed=True, description="when it opens again")]) -> FindingOut:
    """Quiet until a date: no rebuild and no redeploy flag from it until then."""
    return FindingOut.of(svc.findings.snooze(workspace=workspace, finding_id=finding_id, until=until))


@router.post(FINDINGS + "/{finding_id}/reopen", response_model=FindingOut, tags=["patch watch"])
def reopen(workspace: str, finding_id: str, svc: Svc) -> FindingOut:
    """Undo an acknowledgement or a snooze."""
    return FindingOut.of(svc.findings.reopen(workspace=workspace, finding_id=finding_id))
