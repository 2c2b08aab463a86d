"""Authorization on every route but health: a dependency of the API router, so a new route is covered at once.

A route under `/workspaces/{workspace}` needs the reader role there to read and contributor to change, unless it
declares otherwise with `@needs(...)`; a route outside any workspace needs an admin unless it declares
`@needs(ANYONE)` (any signed-in caller: the service then decides, as for tokens)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from functions.http_api.deps import services
from functions.http_api.identity import bearer, identify
from shared.bootstrap import Services
from shared.domain.access import Principal, Role
from shared.services.access import require, require_admin

ANYONE: Literal["anyone"] = "anyone"
ADMIN: Literal["admin"] = "admin"
Need = Role | Literal["anyone", "admin"]
READS = frozenset({"GET", "HEAD", "OPTIONS"})
_MARK = "__envhub_needs__"
F = TypeVar("F", bound=Callable[..., Any])


def needs(need: Need) -> Callable[[F], F]:
    """Declare what a route needs (put it under the route decorator)."""
    def mark(endpoint: F) -> F:
        setattr(endpoint, _MARK, need)
        return endpoint
    return mark


def authorize(request: Request, svc: Annotated[Services, Depends(services)],
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """Authenticate the caller and check the route's need; the principal is kept for the audit log. (A plain
    function: FastAPI runs it in the thread pool, since the token lookup is blocking I/O.)"""
    principal = identify(request, svc, credentials)
    request.state.principal = principal
    need: Need | None = getattr(request.scope.get("endpoint"), _MARK, None)
    workspace = request.path_params.get("workspace")
    if workspace is not None:
        request.state.workspace = workspace
        if need == ADMIN:
            require_admin(principal)
        elif need != ANYONE:
            require(principal, workspace, need or (Role.READER if request.method in READS else Role.CONTRIBUTOR))
    elif need != ANYONE:
        require_admin(principal)  # outside workspaces, admin unless the route says otherwise
    return principal


def principal_of(request: Request) -> Principal:
    """The caller `authorize` found (routes that pass it on to a service)."""
    found: Principal = request.state.principal
    return found


Caller = Annotated[Principal, Depends(principal_of)]
