"""The registry circuit breaker: a total deadline per call, a per-host breaker, a cap on calls in flight."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from shared.adapters.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreakerRegistry
from shared.domain.errors import RegistryUnavailable
from shared.domain.images import ImageRef

A = ImageRef(registry="a.test", repository="r", tag="1")
B = ImageRef(registry="b.test", repository="r", tag="1")


class Inner:
    """A registry whose answer per host the test sets: a digest, None (a miss), an error, or a stall."""

    def __init__(self) -> None:
        self.answers: dict[str, object] = {}
        self.calls: Counter[str] = Counter()
        self.release = threading.Event()

    def _answer(self, host: str) -> str | None:
        self.calls[host] += 1
        answer = self.answers.get(host, "sha256:" + "0" * 64)
        if answer == "stall":
            self.release.wait(10)
            raise RegistryUnavailable("stalled", where=host)
        if isinstance(answer, BaseException):
            raise answer
        return answer if isinstance(answer, str) else None

    def check(self) -> None:
        self._answer("a.test")

    def head(self, ref: ImageRef) -> str | None:
        return self._answer(ref.registry)

    def tags(self, registry: str, repository: str) -> list[str]:
        self._answer(registry)
        return ["1"]

    def created(self, ref: ImageRef) -> datetime | None:
        self._answer(ref.registry)
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inner() -> Iterator[Inner]:
    fake = Inner()
    yield fake
    fake.release.set()


def wrap(inner: Inner, clock: Clock, **options: float) -> CircuitBreakerRegistry:
    settings: dict[str, float] = {"deadline": 1.0, "failures": 3, "cooldown": 10.0} | options
    return CircuitBreakerRegistry(inner, home="a.test", clock=clock, **settings)  # type: ignore[arg-type]


def test_opens_after_failures_answers_at_once_then_probes(inner: Inner) -> None:
    clock = Clock()
    registry = wrap(inner, clock)
    inner.answers["a.test"] = RegistryUnavailable("503", where="a.test")
    for _ in range(3):
        with pytest.raises(RegistryUnavailable):
            registry.head(A)
    assert registry.state("a.test") == OPEN and inner.calls["a.test"] == 3
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(RegistryUnavailable, match="not asked again") as raised:
            registry.head(A)
    assert time.monotonic() - started < 0.5 and inner.calls["a.test"] == 3  # no call reached the registry
    assert raised.value.retry_after == 10
    assert registry.head(B) is not None  # another host has its own circuit

    clock.now += 10  # half-open: one probe; it fails, so the circuit opens for another cooldown
    assert registry.state("a.test") == HALF_OPEN
    with pytest.raises(RegistryUnavailable, match="503"):
        registry.tags("a.test", "r")
    assert registry.state("a.test") == OPEN and inner.calls["a.test"] == 4
    with pytest.raises(RegistryUnavailable, match="not asked again"):
        registry.created(A)

    clock.now += 10
    inner.answers["a.test"] = None  # a miss is an answer: the probe closes the circuit
    assert registry.head(A) is None
    assert registry.state("a.test") == CLOSED
    registry.check()
    registry.close()


def test_other_errors_and_misses_do_not_open_it(inner: Inner) -> None:
    registry = wrap(inner, Clock())
    inner.answers["a.test"] = ValueError("not an outage")
    for _ in range(5):
        with pytest.raises(ValueError):
            registry.head(A)
    assert registry.state("a.test") == CLOSED
    inner.answers["a.test"] = RegistryUnavailable("503", where="a.test")
    for _ in range(2):
        with pytest.raises(RegistryUnavailable):
            registry.head(A)
    inner.answers["a.test"] = None
    assert registry.head(A) is None  # a success in between resets the count
    inner.answers["a.test"] = RegistryUnavailable("503", where="a.test")
    for _ in range(2):
        with pytest.raises(RegistryUnavailable):
            registry.head(A)
    assert registry.state("a.test") == CLOSED
    registry.close()


def test_a_stalled_call_ends_at_the_deadline_and_the_cap_refuses_at_once(inner: Inner) -> None:
    registry = wrap(inner, Clock(), deadline=0.5, per_host=2, failures=10, slow=0.05)
    inner.answers["a.test"] = "stall"
    outcomes: list[float] = []

    def one() -> None:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match=r"registry a\.test could not be reached"):
            registry.head(A)
        outcomes.append(time.monotonic() - started)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    # Past the cap while the calls in flight are slow: refused, not queued
    with pytest.raises(RegistryUnavailable, match="still waiting"):
        registry.head(A)
    assert time.monotonic() - started < 0.05
    assert registry.head(B) is not None  # the other host is not held up
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2 and all(0.45 < took < 1.0 for took in outcomes)
    inner.release.set()  # the abandoned calls end; their slots free up
    deadline = time.monotonic() + 5
    inner.answers["a.test"] = None
    while True:
        try:
            assert registry.head(A) is None
            break
        except RegistryUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    registry.close()


def test_the_pool_is_its_own_and_passes_other_attributes_through(inner: Inner) -> None:
    registry = wrap(inner, Clock())
    assert registry.calls is inner.calls  # e.g. OciRegistry.requests
    registry.head(A)
    assert any(t.name.startswith("registry-call") for t in threading.enumerate())
    registry.close()
    with pytest.raises(RegistryUnavailable, match="closed"):
        registry.head(A)


def test_past_the_cap_a_call_waits_while_the_host_answers_quickly(inner: Inner) -> None:
    registry = wrap(inner, Clock(), per_host=2)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: registry.head(A), range(200)))
    assert len(answers) == 200 and all(answers)
    registry.close()
