"""Errors as RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shared.domain import errors

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
STATUS = {
    errors.ContextTooLarge: 413,
    errors.InvalidContext: 400,
    errors.InvalidDefinition: 422,
    errors.ReservedName: 422,
    errors.NotFound: 404,
    errors.VersionConflict: 409,
    errors.NothingToBuild: 409,
    errors.Unavailable: 503,
}
TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 409: "Conflict",
          413: "Content too large", 415: "Unsupported media type", 422: "Invalid definition",
          500: "Internal error", 503: "Service unavailable"}


def problem(status: int, detail: str, *, slug: str, request: Request, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": f"urn:envhub:problem:{slug}", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, "instance": request.url.path, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    """Map every error an endpoint can raise to a problem."""

    @app.exception_handler(errors.EnvhubError)
    async def domain_error(request: Request, error: errors.EnvhubError) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)
        response = problem(status, str(error), slug=error.slug, request=request, where=error.where)
        if isinstance(error, errors.Unavailable):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        issues = [{"where": ".".join(str(p) for p in item["loc"]), "problem": item["msg"]} for item in error.errors()]
        detail = "; ".join(f"{item['where']}: {item['problem']}" for item in issues)
        return problem(422, detail, slug="invalid-request", request=request, errors=issues)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return problem(error.status_code, str(error.detail), slug="http", request=request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error occurred; it has been logged", slug="internal", request=request)
