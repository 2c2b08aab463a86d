"""A Registry wrapper that keeps a slow or dead registry from holding up anything else.

Every call gets a short total deadline, retries of the inner client included: it runs in a small pool of this
wrapper's own threads, and the caller waits at most `deadline` seconds for it. Calls to one registry host that
are in flight are capped (`per_host`); a call past the cap waits for a free place while the host answers, and
is refused at once when the oldest call in flight is older than `slow` seconds. So a stalled registry ties up
at most `per_host` of the caller's threads for long (FastAPI's pool of 40 serves the other routes).

Per registry host, a circuit breaker: after `failures` RegistryUnavailable in a row it opens for `cooldown`
seconds and answers RegistryUnavailable at once, without a connection; then one call (half-open) is let
through as a probe: its success closes the circuit, its failure opens it again. A miss (404, None) is an
answer, so it counts as a success. Hand-written (a few dozen lines) rather than pybreaker or circuitbreaker:
neither bounds a call's total time or keys its state by registry host, which are the two things needed here."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from shared.domain.errors import RegistryUnavailable
from shared.domain.images import ImageRef
from shared.ports import Registry

log = logging.getLogger(__name__)
T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass
class _Circuit:
    state: str = CLOSED
    failures: int = 0  # RegistryUnavailable in a row
    opened_at: float = 0.0
    probing: bool = False  # a half-open probe is in flight
    started: dict[object, float] = field(default_factory=dict)  # calls in flight: when each began


class CircuitBreakerRegistry:
    """The Registry port over `inner`, with a total deadline per call and a circuit breaker per host.

    `home` is the host `check()` asks about (the workspace's registry)."""

    def __init__(self, inner: Registry, *, home: str | None = None, deadline: float = 3.0, failures: int = 5,
                 cooldown: float = 10.0, workers: int = 16, per_host: int = 8,
                 slow: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or workers < 1 or per_host < 1:
            raise ValueError("failures, workers and per_host must be at least 1")
        self.inner = inner
        self.home = home or "registry"
        self.deadline = deadline
        self.failures = failures
        self.cooldown = cooldown
        self.per_host = per_host
        self.slow = slow
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry-call")
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a call in flight ended

    def __getattr__(self, name: str) -> Any:
        """What else the inner client offers (its request counters, say)."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def close(self) -> None:
        """Stop the pool's threads (calls still running are abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def state(self, host: str) -> str:
        """closed, open or half-open (open turns half-open once the cooldown is over)."""
        with self._lock:
            circuit = self._circuits.get(host)
            if circuit is None:
                return CLOSED
            if circuit.state == OPEN and self._clock() - circuit.opened_at >= self.cooldown:
                return HALF_OPEN
            return circuit.state

    # The Registry port.

    def check(self) -> None:
        self._call(self.home, self.inner.check)

    def head(self, ref: ImageRef) -> str | None:
        return self._call(ref.registry, lambda: self.inner.head(ref))

    def tags(self, registry: str, repository: str) -> list[str]:
        return self._call(registry, lambda: self.inner.tags(registry, repository))

    def created(self, ref: ImageRef) -> datetime | None:
        return self._call(ref.registry, lambda: self.inner.created(ref))

    # The machinery.

    def _call(self, host: str, call: Callable[[], T]) -> T:
        probe, token = self._admit(host)
        try:
            future: Future[T] = self._pool.submit(call)
        except RuntimeError:  # the pool was shut down
            self._leave(host, token)
            self._finish(host, probe, failed=True)
            raise RegistryUnavailable("the registry client is closed", where=host) from None
        future.add_done_callback(lambda _: self._leave(host, token))
        try:
            result = future.result(timeout=self.deadline)
        except FutureTimeout:
            future.cancel()  # not started yet: never started; running: left to end on its own
            self._finish(host, probe, failed=True)
            # Said as every other unreachable registry is: a slow host is not told apart from a refusing one.
            log.warning("registry %s: no answer within %g s", host, self.deadline)
            raise RegistryUnavailable(f"registry {host} could not be reached", where=host,
                                      retry_after=max(1, round(self.cooldown))) from None
        except RegistryUnavailable:
            self._finish(host, probe, failed=True)
            raise
        except BaseException:
            self._finish(host, probe, failed=False)  # any other error is an answer, not an outage
            raise
        self._finish(host, probe, failed=False)
        return result

    def _admit(self, host: str) -> tuple[bool, object]:
        """Let a call through, or raise RegistryUnavailable; returns whether it is the half-open probe, and its
        token in the host's calls in flight.

        Past `per_host` calls in flight, a call waits for one to end while the host answers quickly; once the
        oldest call in flight is older than `slow` seconds (a stalling registry), it is refused at once."""
        token = object()
        give_up = time.monotonic() + self.deadline
        with self._changed:
            circuit = self._circuits.setdefault(host, _Circuit())
            while True:
                probe = False
                if circuit.state == OPEN:
                    left = self.cooldown - (self._clock() - circuit.opened_at)
                    if left > 0 or circuit.probing:
                        raise RegistryUnavailable(
                            f"the registry failed {circuit.failures} times in a row; not asked again for "
                            f"{left:.0f} s" if left > 0 else "the registry is being probed after failures; "
                            "try again shortly", where=host, retry_after=max(1, round(left)))
                    probe = True  # half-open: this call alone finds out
                if len(circuit.started) < self.per_host:
                    circuit.probing = circuit.probing or probe
                    circuit.started[token] = time.monotonic()
                    return probe, token
                now = time.monotonic()
                if now - min(circuit.started.values()) >= self.slow or now >= give_up:
                    raise RegistryUnavailable(f"{len(circuit.started)} calls to this registry are still waiting "
                                              "for an answer", where=host, retry_after=max(1, round(self.deadline)))
                self._changed.wait(min(0.05, give_up - now))

    def _leave(self, host: str, token: object) -> None:
        with self._changed:
            self._circuits[host].started.pop(token, None)
            self._changed.notify_all()

    def _finish(self, host: str, probe: bool, *, failed: bool) -> None:
        with self._lock:
            circuit = self._circuits[host]
            if probe:
                circuit.probing = False
            if not failed:
                if circuit.state == OPEN:
                    log.info("registry %s answers again: circuit closed", host)
                circuit.state, circuit.failures = CLOSED, 0
                return
            circuit.failures += 1
            if probe or circuit.failures >= self.failures:
                if circuit.state != OPEN or probe:
                    log.warning("registry %s failed %d times in a row: circuit open for %g s", host,
                                circuit.failures, self.cooldown)
                circuit.state, circuit.opened_at = OPEN, self._clock()
