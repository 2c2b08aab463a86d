"""envhub's errors as RFC 9457 problem details: one mapping for HTTP answers and queue replies alike."""

from __future__ import annotations

from typing import Any

from shared.domain import errors

STATUS: dict[type[errors.EnvhubError], int] = {
    errors.ContextTooLarge: 413,
    errors.InvalidContext: 400,
    errors.InvalidDefinition: 422,
    errors.ReservedName: 422,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.VersionConflict: 409,
    errors.NothingToBuild: 409,
    errors.Unavailable: 503,
}
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict",
          413: "Content too large", 415: "Unsupported media type", 422: "Invalid definition",
          500: "Internal error", 503: "Service unavailable"}


def status_of(error: errors.EnvhubError) -> int:
    """The HTTP status an error answers with (400 for kinds without one of their own)."""
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)


def printable(text: str) -> str:
    """Text that encodes as UTF-8: a lone surrogate a caller sent (JSON allows "\\udcff") is quoted back as an
    escape instead of failing the answer."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem_body(status: int, detail: str, *, slug: str, instance: str, **extra: Any) -> dict[str, Any]:
    """A problem+json body."""
    return {"type": f"urn:envhub:problem:{slug}", "title": TITLES.get(status, "Error"), "status": status,
            "detail": printable(detail), "instance": instance,
            **{k: printable(v) if isinstance(v, str) else v for k, v in extra.items()}}


def problem_of(error: errors.EnvhubError, instance: str) -> dict[str, Any]:
    """The problem body of a domain error."""
    return problem_body(status_of(error), str(error), slug=error.slug, instance=instance, where=error.where)
