"""Pure figures for the load benchmark: percentiles, phase summaries, overlaps and the registration integrity check."""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


def percentile(samples: Iterable[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of `samples`, in any order; nan when there are none.

    Nearest rank rather than interpolation: a p99 is then a latency some request really had."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@dataclass(frozen=True)
class Summary:
    """Requests answered in a phase, its wall time, and its latencies' p50, p99 and maximum (seconds)."""

    count: int
    seconds: float
    p50: float
    p99: float
    worst: float

    @classmethod
    def of(cls, latencies: Sequence[float], seconds: float) -> Summary:
        """The summary of `latencies` measured over `seconds` of wall time."""
        return cls(len(latencies), seconds, percentile(latencies, 50), percentile(latencies, 99),
                   max(latencies, default=math.nan))

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.count / self.seconds if self.seconds > 0 else math.nan

    def text(self, unit: str) -> str:
        """Throughput and percentiles, as the report prints them."""
        return f"{self.rate:,.0f} {unit}/s, p50 {self.p50 * 1e3:.1f} ms, p99 {self.p99 * 1e3:.1f} ms"

    def tail(self) -> str:
        """Percentiles and maximum, for latency-only phases."""
        return (f"p99 {self.p99 * 1e3:.1f} ms (p50 {self.p50 * 1e3:.1f}, max {self.worst * 1e3:.0f} ms, "
                f"n={self.count})")


def overlaps(intervals: Iterable[tuple[str, float, float]]) -> int:
    """Pairs of (key, start, end) intervals with the same key that overlap in time: here, registrations of one
    name that the server had in hand at once."""
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, start, end in intervals:
        by_key[key].append((start, end))
    pairs = 0
    for spans in by_key.values():
        ends: list[float] = []  # ends of the earlier-starting intervals still open
        for start, end in sorted(spans):
            while ends and ends[0] <= start:
                heapq.heappop(ends)
            pairs += len(ends)
            heapq.heappush(ends, end)
    return pairs


def integrity(sent: Mapping[str, str], answers: Mapping[str, tuple[int, str | None]],
              seen: Mapping[str, Sequence[tuple[str, str | None]]]) -> tuple[int, list[str]]:
    """Check registrations against what the server reads back; returns (good requests, problems).

    `sent`: request id -> name; `answers`: request id -> (status, version answered); `seen`: name -> the
    (version, request id tagged on it) the history listing shows. A request is good when it was answered 201,
    exactly one record carries its id, that record is the name and version it was answered, and its name's
    versions are exactly 1..n for the n registrations sent (none lost, none doubled, no gap)."""
    problems: list[str] = []
    wanted = Counter(sent.values())
    bad_names: set[str] = set()
    for name in sorted(set(wanted) | set(seen)):
        versions = sorted(version for version, _ in seen.get(name, ()))
        expected = sorted(str(i) for i in range(1, wanted[name] + 1))
        if versions != expected:
            bad_names.add(name)
            missing = sorted(set(expected) - set(versions), key=_numeric)
            doubled = sorted((v for v, k in Counter(versions).items() if k > 1), key=_numeric)
            extra = sorted(set(versions) - set(expected), key=_numeric)
            problems.append(f"{name}: {len(versions)} versions read back for {wanted[name]} sent "
                            f"(missing {missing}, doubled {doubled}, unexpected {extra})")
    where: dict[str, tuple[str, str]] = {}
    carried: Counter[str] = Counter()
    for name, records in seen.items():
        for version, request in records:
            if request is not None:
                carried[request] += 1
                where[request] = (name, version)
    good = 0
    for request, name in sent.items():
        status, answered = answers.get(request, (0, None))
        if status != 201:
            problems.append(f"{request} ({name}) answered {status or 'nothing'}")
        elif carried[request] != 1:
            problems.append(f"{request} ({name}) is on {carried[request]} records")
        elif where[request] != (name, answered):
            problems.append(f"{request} was answered {name}:{answered} but is on {':'.join(where[request])}")
        elif name not in bad_names:
            good += 1
    return good, problems


def _numeric(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)
