"""Listing pages for the use cases: a $skiptoken the store never handed out is the caller's mistake (422)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from shared.domain.errors import InvalidDefinition
from shared.ports import Page

T = TypeVar("T")


def page_of(fetch: Callable[[], Page[T]]) -> Page[T]:
    """`fetch()`'s page. Stores raise ValueError for a cursor they did not make (a forged or mangled
    $skiptoken); unanswered, that would be a 500."""
    try:
        return fetch()
    except ValueError as error:
        if isinstance(error, ValidationError):  # a stored record that does not parse is not the caller's fault
            raise
        raise InvalidDefinition("not a $skiptoken this service handed out; start from the first page",
                                where="$skiptoken") from error
