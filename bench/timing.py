"""Best-of timing with interleaved sides, and the rows the report prints."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the report: envhub's figure, the baseline's, their ratio and the goal for it."""

    benchmark: str
    envhub: str
    baseline: str
    ratio: float
    goal: float | None  # None: reported for information, no verdict
    lower_is_better: bool = False  # a ratio of times (envhub / baseline) rather than of throughputs

    @property
    def goal_text(self) -> str:
        """The goal as the report prints it: ">= g", "<= g", or "info"."""
        if self.goal is None:
            return "info"
        return f"{'<=' if self.lower_is_better else '>='} {self.goal:.2f}"

    @property
    def verdict(self) -> str:
        """meets / misses, or a dash for an information row."""
        if self.goal is None:
            return "-"
        met = self.ratio <= self.goal if self.lower_is_better else self.ratio >= self.goal
        return "meets" if met else "misses"


def best_of(sides: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """The minimum wall time of each side over `repeats` rounds.

    The sides run interleaved, and the order flips every round, so that a slow patch of a noisy machine
    (or a cache warmed by whoever ran just before) lands on every side rather than on one.
    """
    best = [float("inf")] * len(sides)
    for round_ in range(repeats):
        order = list(range(len(sides)))
        if round_ % 2:
            order.reverse()
        for index in order:
            start = time.perf_counter()
            sides[index]()
            best[index] = min(best[index], time.perf_counter() - start)
    return best
