"""Errors as RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shared.domain import errors
from shared.domain.problems import problem_body, status_of

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def problem(status: int, detail: str, *, slug: str, request: Request, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    return JSONResponse(problem_body(status, detail, slug=slug, instance=request.url.path, **extra),
                        status_code=status, media_type=PROBLEM_JSON)


def allowed_methods(request: Request) -> str:
    """Every documented method of the request's path: Starlette's own 405 names only the first route that
    matched the path, although several routes (GET and POST of one path) may share it."""
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    methods = {method.upper() for template, operations in paths.items()
               if _template(template).fullmatch(request.url.path) for method in operations}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return ", ".join(sorted(methods))


@lru_cache(maxsize=256)
def _template(path: str) -> re.Pattern[str]:
    """A path template as Starlette matches it: a `{parameter}` is one segment."""
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)))


def install(app: FastAPI) -> None:
    """Map every error an endpoint can raise to a problem."""

    @app.exception_handler(errors.EnvhubError)
    async def domain_error(request: Request, error: errors.EnvhubError) -> JSONResponse:
        status = status_of(error)
        response = problem(status, str(error), slug=error.slug, request=request, where=error.where)
        if isinstance(error, errors.Unavailable):
            response.headers["Retry-After"] = str(error.retry_after)
        if isinstance(error, errors.Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="envhub"'
        if status >= 400 and status != 404:
            log.info("%s %s: %d %s", request.method, request.url.path, status, error.slug)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        issues = [{"where": ".".join(str(p) for p in item["loc"]), "problem": item["msg"]} for item in error.errors()]
        detail = "; ".join(f"{item['where']}: {item['problem']}" for item in issues)
        return problem(422, detail, slug="invalid-request", request=request, errors=issues)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        response = problem(error.status_code, str(error.detail), slug="http", request=request)
        response.headers.update(error.headers or {})  # e.g. the Allow a 405 must carry (RFC 9110)
        if error.status_code == 405 and (documented := allowed_methods(request)):
            response.headers["Allow"] = documented  # else Starlette's own (an undocumented route, the docs)
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error occurred; it has been logged", slug="internal", request=request)
