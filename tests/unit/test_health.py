"""The health monitor: one deadline for every probe, and a report answered at once once taken."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from shared.health import HealthMonitor


class Port:
    """A probe that answers, fails or hangs as told, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.hang = threading.Event()
        self.error: Exception | None = None

    def check(self) -> None:
        self.calls += 1
        if self.hang.is_set():
            time.sleep(30)
        if self.error is not None:
            raise self.error


@dataclass(frozen=True)
class Info:
    kind: str
    adapter: Any


def monitor(**ports: Port) -> HealthMonitor:
    return HealthMonitor({n: Info("test", p) for n, p in ports.items()}, annotate=lambda n, e: None, timeout=0.5,
                         fresh_for=0.2)


def test_a_hung_probe_costs_one_deadline_not_more() -> None:
    quick, hung = Port(), Port()
    hung.hang.set()
    started = time.monotonic()
    report = monitor(quick=quick, hung=hung).probe()
    assert time.monotonic() - started < 1.5  # one 0.5 s deadline for all, and no wait for the hung thread
    assert report["quick"]["ok"] and not report["hung"]["ok"] and "no answer" in report["hung"]["error"]


def test_reports_are_answered_at_once_and_refreshed_in_the_background() -> None:
    registry = Port()
    health = monitor(registry=registry)
    assert health.report()["registry"]["ok"] and registry.calls == 1
    for _ in range(50):  # a flood of calls within the freshness window probes nothing
        health.report()
    assert registry.calls == 1
    registry.hang.set()  # the registry now accepts and never answers
    time.sleep(0.25)
    started = time.monotonic()
    assert health.report()["registry"]["ok"]  # stale: answered at once, a refresh starts behind it
    assert time.monotonic() - started < 0.05
    deadline = time.monotonic() + 5
    while health.report()["registry"]["ok"]:
        assert time.monotonic() < deadline, "the stall never showed in the report"
        time.sleep(0.05)
    assert "no answer within" in health.report()["registry"]["error"]
    registry.hang.clear()
    registry.error = RuntimeError("refused")
    deadline = time.monotonic() + 5
    while "refused" not in health.report()["registry"].get("error", ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
