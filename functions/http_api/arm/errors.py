"""Errors on the ARM routes in ARM's shape, `{"error": {"code", "message"}}`: the problem handlers' answers, reshaped.

One status mapping serves both APIs: problems.py decides status and headers (Retry-After, WWW-Authenticate, Allow)
for every error, and under ARM_PREFIX the problem body is rewritten, with 422 answered as ARM's 400."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from shared.domain.errors import NotFound

ARM_PREFIX = "/api/subscriptions/"
PROBLEM_JSON = "application/problem+json"
# Slugs whose ARM code is not simply the slug in PascalCase. Never "MissingSubscriptionRegistration": azure-core
# answers that code by trying to register the resource provider.
_CODES = {"not-found": "ResourceNotFound", "version-conflict": "Conflict", "unauthenticated": "AuthenticationFailed",
          "forbidden": "AuthorizationFailed", "invalid-request": "BadRequest", "internal": "InternalServerError"}
_HTTP_CODES = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict", 413: "TooLarge"}


class SubscriptionNotFound(NotFound):
    """The path names another subscription than ENVHUB_ARM_SUBSCRIPTION."""

    slug = "subscription-not-found"


class ResourceGroupNotFound(NotFound):
    """The path names another resource group than ENVHUB_ARM_RESOURCE_GROUP."""

    slug = "resource-group-not-found"


class ArmErrorDetail(BaseModel):
    """What went wrong."""

    code: str
    message: str
    target: str | None = None


class ArmError(BaseModel):
    """An error, as Azure Resource Manager answers one."""

    error: ArmErrorDetail


def is_arm(path: str) -> bool:
    """Whether a request path is one of the ARM routes."""
    return path.startswith(ARM_PREFIX)


def arm_code(slug: str, status: int) -> str:
    """The ARM error code for an envhub problem type."""
    if slug == "http":
        return _HTTP_CODES.get(status, "Error")
    return _CODES.get(slug) or "".join(part.capitalize() for part in slug.split("-"))


def arm_error_body(status: int, slug: str, message: str, target: str | None = None) -> bytes:
    """The bytes of an ARM error body."""
    detail = {"code": arm_code(slug, status), "message": message, **({"target": target} if target else {})}
    return json.dumps({"error": detail}).encode()


def reshaped(response: Response) -> Response:
    """A problem+json response as ARM's error, with the same headers; 422 (envhub's invalid input) becomes 400."""
    if response.media_type != PROBLEM_JSON:
        return response
    problem: dict[str, Any] = json.loads(bytes(response.body))
    status = 400 if response.status_code == 422 else response.status_code
    body = arm_error_body(status, str(problem.get("type", "")).rsplit(":", 1)[-1], str(problem.get("detail", "")),
                          problem.get("where"))
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def install(app: FastAPI) -> None:
    """Wrap every installed exception handler (problems.install first) so that ARM paths get ARM's shape."""
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _reshaping(handler)


def _reshaping(handler: Callable[..., Any]) -> Callable[..., Any]:
    async def handle(request: Request, error: Exception) -> Any:
        response = handler(request, error)
        if inspect.isawaitable(response):
            response = await response
        return reshaped(response) if isinstance(response, Response) and is_arm(request.url.path) else response
    return handle


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the ARM errors a route can answer with."""
    described = {400: "invalid input", 401: "no valid bearer token", 403: "the caller's role is too low",
                 404: "not found (or another subscription or resource group than configured)",
                 409: "the version exists with other content", 413: "too large", 503: "retry after Retry-After"}
    return {code: {"model": ArmError, "description": described.get(code, "error")} for code in codes}

