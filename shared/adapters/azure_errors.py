"""Azure SDK failures that mean "not now" (throttled, timed out, down) turned into envhub's Unavailable errors:
a 503 with Retry-After over HTTP, a retried message on a queue. Answers (404, 409, 412, 400) pass through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.core.exceptions import AzureError, HttpResponseError

from shared.domain.errors import Unavailable

TRANSIENT = frozenset({408, 429, 449, 500, 502, 503, 504})
RETRY_AFTER = 5


@contextlib.contextmanager
def outage_as(kind: type[Unavailable], service: str, where: str) -> Iterator[None]:
    """Inside the block, an outage of `service` raises `kind`."""
    try:
        yield
    except HttpResponseError as error:
        if error.status_code is not None and error.status_code not in TRANSIENT:
            raise
        raise kind(f"{service} did not answer ({error.status_code or type(error).__name__})", where=where,
                   retry_after=RETRY_AFTER) from error
    except AzureError as error:  # refused connections and timeouts, before any answer
        raise kind(f"{service} did not answer ({type(error).__name__})", where=where,
                   retry_after=RETRY_AFTER) from error
