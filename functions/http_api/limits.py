"""Bounds on request bodies, enforced before anything parses them.

`BodyLimits` is a pure ASGI middleware: a POST, PUT or PATCH body (other than a context upload, which has its
own, larger limit in its route) is refused with a 413 problem when its Content-Length, or failing that the
bytes counted as they stream in, pass `max_body_bytes`; and with a 422 problem when it nests brackets deeper
than `max_json_depth` (found by a scan of the raw bytes, so neither json.loads, pydantic nor envhub's own code
ever recurses that deep). A body within bounds is handed on unchanged. Each refusal logs one line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from functions.http_api.arm.errors import arm_error_body, is_arm
from shared.domain.limits import MAX_NODES

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # a definition or a job, as JSON
MAX_JSON_DEPTH = 100  # a little above the definitions' own depth limit (64), for the bodies that wrap one
UPLOAD_PATH = re.compile(r"/workspaces/[^/]+/contexts/?$")  # tar.gz uploads: ENVHUB_MAX_UPLOAD_BYTES in the route
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
PROBLEM_JSON = "application/problem+json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_values(body: bytes) -> int:
    """A lower bound on the values in a JSON body: one more than its commas outside strings."""
    return _JSON_STRING.sub(b"", body).count(b",") + 1


def json_depth(body: bytes, limit: int) -> int:
    """How deep `body`'s brackets nest outside strings, stopping early once past `limit`."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


class BodyLimits:
    """ASGI middleware bounding request bodies: size (413) and JSON nesting (422), before any parsing."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES,
                 max_json_depth: int = MAX_JSON_DEPTH, exempt: re.Pattern[str] = UPLOAD_PATH) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") not in BODY_METHODS
                or self.exempt.search(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            what = f"the body is {declared} bytes" if declared.isdigit() else "the Content-Length is not a number"
            await self._refuse(scope, send, 413, "body-too-large",
                               f"{what}; the limit is {self.max_body_bytes} bytes")
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nothing to answer, nothing was handled
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                await self._refuse(scope, send, 413, "body-too-large",
                                   f"the body exceeds the limit of {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_values(body) > MAX_NODES:  # surely past the definitions' value limit: refused before parsing
            await self._refuse(scope, send, 422, "invalid-definition",
                               f"the definition has more than {MAX_NODES} values (aliases counted as expanded)")
            return
        if json_depth(body, self.max_json_depth) > self.max_json_depth:
            await self._refuse(scope, send, 422, "body-too-deep",
                               f"the JSON body nests deeper than {self.max_json_depth} levels")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for a disconnect, as the server would

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, status: int, slug: str, detail: str) -> None:
        path = scope.get("path", "")
        log.warning("refused %s %s: %d %s", scope.get("method"), path, status, detail)
        title = "Content too large" if status == 413 else "Unprocessable content"
        body = json.dumps({"type": f"urn:envhub:problem:{slug}", "title": title, "status": status,
                           "detail": detail, "instance": path, "where": "<body>"}).encode()
        media = PROBLEM_JSON
        if is_arm(path):  # Azure ML's SDK reads ARM's error shape (and 400 where envhub says 422)
            status = 400 if status == 422 else status
            body, media = arm_error_body(status, slug, detail, "<body>"), "application/json"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", media.encode()),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1").strip())
    return None
