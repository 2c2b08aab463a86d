"""HTTP routes for who may do what: tokens (issue, list, revoke) and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from functions.http_api.auth import ANYONE, Caller, needs
from functions.http_api.deps import next_link, services
from functions.http_api.environments import Skip, Top
from functions.http_api.schemas import BODY_PROBLEMS, problem_responses
from shared.bootstrap import Services
from shared.domain.access import AuditEntry, Role, TokenRecord
from shared.domain.errors import VersionConflict

router = APIRouter(tags=["access"], responses=problem_responses(401, 403, 404, 422))
Svc = Annotated[Services, Depends(services)]


class TokenIn(BaseModel):
    """What a new token may do: a role in a workspace (`*`: every one, admins only), or admin."""

    workspace: str | None = Field(None, max_length=255)
    role: str | None = Field(None, description="reader, contributor or owner (reader by default)")
    admin: bool = False
    label: str = Field("", max_length=200, description="what the token is for, shown in listings")


class TokenOut(BaseModel):
    """A token as listed: never its secret."""

    id: str
    workspace: str | None
    role: str | None
    admin: bool
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: TokenRecord) -> TokenOut:
        return cls(id=record.id, workspace=record.workspace, role=None if record.role is None else
                   Role(record.role).label, admin=record.admin, label=record.label, created_at=record.created_at,
                   created_by=record.created_by, revoked_at=record.revoked_at)


class IssuedOut(TokenOut):
    """A new token, with its secret: shown this once, stored only as a hash."""

    token: str


class TokenList(BaseModel):
    value: list[TokenOut]


class AuditPage(BaseModel):
    value: list[AuditEntry]
    nextLink: str | None = None


def _tokens_issued_here(svc: Services) -> None:
    if svc.settings.auth != "tokens":
        raise VersionConflict("envhub issues no tokens when ENVHUB_AUTH is 'entra': Entra ID signs callers in",
                              where="ENVHUB_AUTH")


@router.post("/tokens", status_code=201, response_model=IssuedOut, responses=BODY_PROBLEMS)
@needs(ANYONE)
def issue_token(body: TokenIn, svc: Svc, caller: Caller) -> IssuedOut:
    """Issue a token: admins any, a workspace's owners tokens of that workspace."""
    _tokens_issued_here(svc)
    secret, record = svc.access.issue(caller, workspace=body.workspace, role=body.role, admin=body.admin,
                                      label=body.label)
    return IssuedOut(token=secret, **TokenOut.of(record).model_dump())


@router.get("/tokens", response_model=TokenList)
@needs(ANYONE)
def list_tokens(svc: Svc, caller: Caller, workspace: Annotated[str | None, Query(max_length=255)] = None
                ) -> TokenList:
    """Tokens of a workspace (its owners), or every token (admins)."""
    return TokenList(value=[TokenOut.of(t) for t in svc.access.list_tokens(caller, workspace)])


@router.post("/tokens/{token_id}/revoke", response_model=TokenOut)
@needs(ANYONE)
def revoke_token(token_id: str, svc: Svc, caller: Caller) -> TokenOut:
    """Revoke a token at once; revoking it again changes nothing."""
    return TokenOut.of(svc.access.revoke(caller, token_id))


@router.get("/workspaces/{workspace}/audit", response_model=AuditPage)
@needs(Role.OWNER)
def workspace_audit(workspace: str, request: Request, svc: Svc, caller: Caller, top: Top = 100,
                    skip: Skip = None) -> AuditPage:
    """Every change in the workspace, newest first: who, what, when, the request id and the status."""
    page = svc.access.entries(caller, workspace, top=top, cursor=skip)
    return AuditPage(value=page.items, nextLink=next_link(request, page.next_cursor))


@router.get("/audit", response_model=AuditPage)
def audit(request: Request, svc: Svc, caller: Caller, top: Top = 100, skip: Skip = None) -> AuditPage:
    """Changes outside any workspace (tokens, patch scans), newest first: admins only."""
    page = svc.access.entries(caller, "", top=top, cursor=skip)
    return AuditPage(value=page.items, nextLink=next_link(request, page.next_cursor))
