"""Read-modify-write under a store's optimistic concurrency (a revision or etag), retried when another writer won."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from shared.domain.errors import StaleRecord

R = TypeVar("R", bound=BaseModel)


def change(key: str, read: Callable[[], R | None], write: Callable[[R], R],
           changes: Callable[[R], dict[str, object] | None], *, attempts: int) -> R | None:
    """Apply `changes` to the record `read` returns and `write` it; StaleRecord from `write` means another
    writer moved it on, so read and try again. `changes` returns None to give up; a missing record gives None."""
    for _ in range(attempts):
        current = read()
        if current is None:
            return None
        update = changes(current)
        if update is None:
            return None
        try:
            return write(current.model_copy(update=update))
        except StaleRecord:
            continue
    raise StaleRecord(f"{key} kept changing under this handler", where=key)
