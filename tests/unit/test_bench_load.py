"""The load benchmark's pure helpers: nearest-rank percentiles, summaries, same-name overlaps, the integrity check."""

from __future__ import annotations

import math

import pytest

from bench.load_stats import Summary, integrity, overlaps, percentile


def test_percentile_is_nearest_rank_in_any_order() -> None:
    samples = [float(i) for i in range(100, 0, -1)]  # 1..100, reversed
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile(samples, 0) == 1.0
    assert percentile([0.2, 0.1, 5.0], 99) == 5.0  # few samples: p99 is the worst one
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_rate_and_text() -> None:
    summary = Summary.of([0.010, 0.020, 0.030, 0.040], seconds=2.0)
    assert (summary.count, summary.rate, summary.p50, summary.p99, summary.worst) == (4, 2.0, 0.020, 0.040, 0.040)
    assert summary.text("reg") == "2 reg/s, p50 20.0 ms, p99 40.0 ms"
    assert summary.tail() == "p99 40.0 ms (p50 20.0, max 40 ms, n=4)"


def test_overlaps_counts_pairs_of_one_key_in_flight_together() -> None:
    assert overlaps([("a", 0, 2), ("a", 1, 3), ("a", 2.5, 4), ("b", 0, 10), ("a", 5, 6)]) == 2
    assert overlaps([("a", 0, 1), ("a", 1, 2)]) == 0  # one ends as the next starts
    assert overlaps([("a", 0, 10), ("a", 1, 2), ("a", 3, 4)]) == 2


SENT = {"r1": "x", "r2": "x", "r3": "y"}


def test_integrity_accepts_exact_versions() -> None:
    answers = {"r1": (201, "2"), "r2": (201, "1"), "r3": (201, "1")}
    seen = {"x": [("2", "r1"), ("1", "r2")], "y": [("1", "r3")]}
    assert integrity(SENT, answers, seen) == (3, [])


def test_integrity_finds_errors_lost_and_doubled_versions() -> None:
    # r1 answered 500; a doubled version 1 on x (r2's record twice); r3's version lost.
    answers = {"r1": (500, None), "r2": (201, "1"), "r3": (201, "1")}
    seen: dict[str, list[tuple[str, str | None]]] = {"x": [("1", "r2"), ("1", "r2")], "y": []}
    good, problems = integrity(SENT, answers, seen)
    assert good == 0
    assert any(p.startswith("x: 2 versions read back for 2 sent") and "doubled ['1']" in p for p in problems)
    assert any(p.startswith("y: 0 versions read back for 1 sent") and "missing ['1']" in p for p in problems)
    assert "r1 (x) answered 500" in problems
    assert "r2 (x) is on 2 records" in problems
    assert "r3 (y) is on 0 records" in problems


def test_integrity_finds_a_version_answered_twice() -> None:
    # Both registrations of x were told version 1, and the store kept two versions: the answer is wrong.
    answers = {"r1": (201, "1"), "r2": (201, "1"), "r3": (201, "1")}
    seen = {"x": [("1", "r1"), ("2", "r2")], "y": [("1", "r3")]}
    good, problems = integrity(SENT, answers, seen)
    assert good == 2
    assert problems == ["r2 was answered x:1 but is on x:2"]
