"""Request ids on every response, and an audit entry for every change: a pure ASGI middleware around the API.

A change is a POST, PUT, PATCH or DELETE that an authenticated caller made and that succeeded (status < 400);
the entry names the caller, the method and path, the status and the request id, in the workspace of the path
("" outside workspaces). Routes that change nothing although they POST (hashing a definition) opt out with
`@audited(False)`. The entry is written off the event loop, after the response is sent."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread

from functions.http_api.limits import ASGIApp, Message, Receive, Scope, Send
from shared.services.access import AccessService

log = logging.getLogger(__name__)
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUEST_ID_HEADERS = (b"x-request-id", b"x-ms-request-id", b"x-ms-client-request-id")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MARK = "__envhub_audited__"
F = TypeVar("F", bound=Callable[..., Any])


def audited(audit: bool) -> Callable[[F], F]:
    """Whether a POST route's successful calls are changes worth an audit entry (put it under the route)."""
    def mark(endpoint: F) -> F:
        setattr(endpoint, _MARK, audit)
        return endpoint
    return mark


def request_id(scope: Scope) -> str:
    """The caller's request id when it sent a sane one (Azure's own headers included), else a new one."""
    for key, value in scope.get("headers", []):
        if key.lower() in REQUEST_ID_HEADERS:
            text: str = value.decode("latin-1").strip()
            if _SAFE_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


class Audit:
    """Adds `x-request-id` to every response and records successful changes in the audit log."""

    def __init__(self, app: ASGIApp, *, access: AccessService) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        status = 0

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        await self.app(scope, receive, tagged)
        principal = state.get("principal")
        if (scope.get("method") in CHANGES and principal is not None and 0 < status < 400
                and getattr(scope.get("endpoint"), _MARK, True)):
            await anyio.to_thread.run_sync(self._record, state.get("workspace", ""), principal.subject,
                                           f"{scope['method']} {scope.get('path', '')}", status, rid)

    def _record(self, workspace: str, who: str, action: str, status: int, rid: str) -> None:
        try:
            self.access.record(workspace=workspace, who=who, action=action, status=status, request_id=rid)
        except Exception:  # the change stands; a lost audit line is logged loudly rather than failing the caller
            log.exception("audit entry lost: %s %s by %s (request %s)", action, status, who, rid)
