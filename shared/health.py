"""Readiness: every port probed in parallel under one deadline, answered from a report at most a second old."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from shared.ports import Probe

HEALTH_TIMEOUT = 5.0  # seconds a port may take to answer a probe
FRESH_FOR = 1.0  # a report younger than this is answered as is


class Described(Protocol):
    """What the monitor needs of a port: its adapter kind, and the adapter to probe."""

    @property
    def kind(self) -> str: ...

    @property
    def adapter(self) -> Any: ...


Report = dict[str, dict[str, Any]]


class HealthMonitor:
    """Probes every port at most once per FRESH_FOR, whatever the request rate.

    The first report is taken while the caller waits. After that a caller gets the latest report at once and a
    stale one is refreshed in the background (stale-while-revalidate): a dependency that stalls (a registry that
    accepts and never answers) makes the report say so within FRESH_FOR plus the probe deadline, and never makes
    /api/health itself slow, nor lets a flood of health calls pile probes onto a struggling backend."""

    def __init__(self, ports: Mapping[str, Described], *, annotate: Callable[[str, dict[str, Any]], None],
                 timeout: float = HEALTH_TIMEOUT, fresh_for: float = FRESH_FOR,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ports = ports
        self.annotate = annotate
        self.timeout = timeout
        self.fresh_for = fresh_for
        self.clock = clock
        self._lock = threading.Lock()
        self._report: Report | None = None
        self._taken = 0.0
        self._refreshing = False

    def report(self) -> Report:
        """The latest report; the first call waits for it."""
        with self._lock:
            report, age = self._report, self.clock() - self._taken
            if report is not None and age >= self.fresh_for and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="health-refresh", daemon=True).start()
        return report if report is not None else self._refresh()

    def _refresh(self) -> Report:
        try:
            report = self.probe()
            with self._lock:
                self._report, self._taken = report, self.clock()
            return report
        finally:
            with self._lock:
                self._refreshing = False

    def probe(self) -> Report:
        """Probe every port now, in parallel, under one deadline."""
        pool = ThreadPoolExecutor(max_workers=len(self.ports) or 1, thread_name_prefix="health-probe")
        deadline = self.clock() + self.timeout  # one deadline for all: the probes run at once
        try:
            futures = {name: pool.submit(_probe, info.adapter) for name, info in self.ports.items()}
            report: Report = {}
            for name, future in futures.items():
                try:
                    error = future.result(timeout=max(0.0, deadline - self.clock()))
                except FutureTimeout:
                    error = f"no answer within {self.timeout:.0f} s"
                entry: dict[str, Any] = {"kind": self.ports[name].kind, "ok": error is None}
                self.annotate(name, entry)
                if error is not None:
                    entry["error"] = error
                report[name] = entry
        finally:
            # Not `with`: its exit waits for every probe, so a hung one would hold the answer past the deadline.
            pool.shutdown(wait=False, cancel_futures=True)
        return report


def _probe(adapter: Probe) -> str | None:
    try:
        adapter.check()
    except Exception as error:  # the probe reports any failure; it never raises into the route
        return f"{type(error).__name__}: {error}"
    return None
