"""What the parser fuzz tests share: a bounded, reproducible hypothesis profile and the one property they check."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from shared.domain.errors import EnvhubError

T = TypeVar("T")

# Reproducible in CI (no example database, a fixed seed) and bounded in time: 150 examples each, a per-example
# deadline generous enough for a loaded CI machine that still flags a parser going quadratic, and an alarm for
# an outright hang. The three files take about 20 s of CPU together.
FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FEW = settings(FUZZ, max_examples=50)  # for the properties whose examples each write a file or an archive
HANG_SECONDS = 10


class Hung(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the code under test swallows it."""


@contextmanager
def alarm(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail the example when the code under test runs longer than `seconds` (the deadline only measures an
    example that finishes)."""
    def ring(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parses_or_refuses(call: Callable[[], T]) -> T | EnvhubError:
    """The property: `call` returns, or raises envhub's own error. Anything else (KeyError, TypeError,
    RecursionError, UnicodeError, a library's internals, a hang) propagates and fails the example."""
    with alarm():
        try:
            return call()
        except EnvhubError as error:
            assert error.detail, "a refusal says why"
            str(error).encode("utf8")  # and can be sent: a problem+json body is UTF-8
            return error


def json_like(max_leaves: int = 30, *, surrogates: bool = False) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values (what an HTTP body can hold, NaN and infinities included: Python's json reads them;
    with `surrogates`, strings made by escapes such as \\udcff, which name no character, too)."""
    text = st.text(max_size=20)
    if surrogates:
        text = text | st.sampled_from(["\udcff", "a\ud800b", "\ud83d"])
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(text, kids, max_size=4), max_leaves=max_leaves)
