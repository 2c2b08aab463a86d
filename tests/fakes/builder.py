"""A scripted Builder for unit tests of the build state machine: runs that start, log, end, crash or vanish."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.domain.builds import RunState, RunStatus
from shared.domain.context import ContextSource
from shared.domain.errors import BuilderUnavailable
from shared.domain.images import ImageRef
from shared.domain.plans import BuildPlan

DIGEST = "sha256:" + "c" * 64


@dataclass
class FakeRun:
    """One run: the polls it has seen, where it pushes, and how it will end."""

    plan: BuildPlan
    context: ContextSource
    targets: list[ImageRef]
    agent_pool: str | None
    platform: str
    lost: bool = False
    polls: int = 0
    cancelled: bool = False


@dataclass
class FakeBuilder:
    """Each run logs two lines over two polls, then pushes `DIGEST` into `images` (a fake registry's dict).
    The first `start_failures` starts raise BuilderUnavailable; the first `lost_runs` runs are LOST."""

    images: dict[str, str]
    start_failures: int = 0
    lost_runs: int = 0
    fail_with: str | None = None  # every run FAILS with this reason
    polls_to_finish: int = 2
    name: str = "fake"
    push: Callable[[ImageRef], str] | None = None  # really push to a registry (returns the digest) instead
    starts: int = 0
    runs: dict[str, FakeRun] = field(default_factory=dict)

    def check(self) -> None:
        """Always answers."""

    def start(self, *, build_id: str, plan: BuildPlan, context: ContextSource, targets: list[ImageRef],
              platform: str, timeout: float, agent_pool: str | None) -> str:
        self.starts += 1
        if self.starts <= self.start_failures:
            raise BuilderUnavailable("buildah was killed by signal 9", where="buildah")
        run_id = f"run-{len(self.runs) + 1}"
        self.runs[run_id] = FakeRun(plan, context, targets, agent_pool, platform, lost=len(self.runs) < self.lost_runs)
        return run_id

    def poll(self, run_id: str, log_offset: int) -> RunStatus:
        run = self.runs.get(run_id)
        if run is None or run.lost:
            return RunStatus(state=RunState.LOST, log_offset=log_offset, reason="the worker was killed")
        run.polls += 1
        if run.cancelled:
            return RunStatus(state=RunState.CANCELLED, log_offset=log_offset, reason="the build was cancelled")
        lines = [f"step {n}" for n in range(1, min(run.polls, self.polls_to_finish) + 1)][log_offset:]
        offset = log_offset + len(lines)
        if run.polls < self.polls_to_finish:
            return RunStatus(state=RunState.RUNNING, log=lines, log_offset=offset)
        if self.fail_with is not None:
            return RunStatus(state=RunState.FAILED, log=lines, log_offset=offset, reason=self.fail_with)
        digest = DIGEST
        for target in run.targets:
            digest = self.push(target) if self.push is not None else DIGEST
            self.images[str(target)] = digest
        return RunStatus(state=RunState.SUCCEEDED, log=lines, log_offset=offset, digest=digest,
                         packages=["python==3.11.9"])

    def cancel(self, run_id: str) -> None:
        self.runs[run_id].cancelled = True
