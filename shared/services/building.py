"""The build state machine: a `build` message starts a run, `check` messages follow it to its end.

No handler waits for a build: an ACR Tasks run takes minutes to hours and a function call must not. Each
step is idempotent and guarded by the record's revision, so a redelivered or duplicated message (a killed
worker, the recovery sweep) moves a build on at most once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.domain.builds import BuildRecord, BuildRequest, BuildStatus, RunState, RunStatus, immutable_tag
from shared.domain.context import ContextSource
from shared.domain.dockerfile import base_images
from shared.domain.errors import BuildFailed, EnvhubError, RegistryUnavailable
from shared.domain.images import environment_image, parse_image
from shared.domain.plans import BuildPlan, GeneratedContext
from shared.domain.templates import resolution_line
from shared.ports import Builder, BuildStore, QueueMessage, QueueSender, Registry
from shared.services import optimistic
from shared.services.contexts import ContextService
from shared.services.templates import TemplateResolver

log = logging.getLogger(__name__)
MAX_CAS_ATTEMPTS = 20  # each failure means another writer moved the record on; a few are plenty


@dataclass(frozen=True)
class BuildPolicy:
    """Timings and limits of the state machine."""

    timeout: float = 3600.0
    check_first: float = 0.25  # seconds before the first check; doubles per check up to check_max
    check_max: float = 1.0
    stale_after: float = 120.0  # an unfinished build untouched this long has lost its messages
    max_attempts: int = 3  # runs started for one build before it fails (lost runs: a killed worker)

    def check_delay(self, checks: int) -> float:
        """How long to wait before check number `checks`."""
        return float(min(self.check_max, self.check_first * 2 ** min(checks, 30)))


class BuildService:
    """Dispatches, follows, cancels and recovers builds, over any Builder."""

    def __init__(self, *, builds: BuildStore, contexts: ContextService, registry: Registry, builder: Builder,
                 queue: QueueSender, registry_host: str, default_registry: str, policy: BuildPolicy,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 templates: TemplateResolver | None = None) -> None:
        self.builds = builds
        self.contexts = contexts
        self.registry = registry
        self.builder = builder
        self.queue = queue
        self.registry_host = registry_host
        self.default_registry = default_registry
        self.policy = policy
        self.clock = clock
        # Resolves {{latest-image-tag}} and {{latest-pypi-version}} at dispatch; without it such a plan fails.
        self.templates = templates
        # Told of every build that ends (replies owed to queue messages); a listener's failure is logged only.
        self.listeners: list[Callable[[BuildRecord], None]] = []

    # -- entry points ---------------------------------------------------------------------------

    def handle_message(self, message: QueueMessage) -> None:
        """The queue's entry point; a fault worth a retry propagates (the queue redelivers)."""
        request = BuildRequest.model_validate_json(message.body)
        if request.type == "check":
            self.check(request.build_id, request.check)
        else:
            self.dispatch(request.build_id)

    def give_up(self, message: QueueMessage, reason: str) -> None:
        """Record the build as failed when its message is poisoned, and stop its run."""
        try:
            request = BuildRequest.model_validate_json(message.body)
        except ValueError:  # no build request at all: nothing to fail, and raising would keep it from the poison
            log.error("poisoned message %s is no build request: %.200r", message.id, message.body)
            return
        build = self.builds.get(request.build_id)
        if build is None or build.status.finished:
            return
        if build.run_id is not None:
            self._cancel_run(build)
        self._finish(build, BuildStatus.FAILED, reason=f"gave up after {message.dequeue_count} attempts: {reason}")

    def send(self, build: BuildRecord, *, check: bool, delay: float = 0.0) -> None:
        """Queue the next step of a build."""
        request = BuildRequest(type="check" if check else "build", build_id=build.id, workspace=build.workspace,
                               hash=build.hash, check=build.checks)
        self.queue.send(request.model_dump_json(), delay=delay)

    # -- dispatch -------------------------------------------------------------------------------

    def dispatch(self, build_id: str) -> None:
        """Start a run for a queued build (or finish it at once when its image already exists)."""
        build = self.builds.get(build_id)
        if build is None or build.status.finished or build.run_id is not None:
            return  # done, or a redelivered message: the run's checks follow it already
        if build.cancel_requested:
            self._finish(build, BuildStatus.CANCELLED, reason="cancelled before it started")
            return
        target = environment_image(self.registry_host, build.image)
        pushed = self.registry.head(target)  # RegistryUnavailable propagates: retried later
        if pushed is not None and pushed != build.replaces:
            # An earlier attempt pushed the image and died before recording it.
            self._log(build, f"envhub: {target} already exists ({pushed}); nothing to build")
            self._finish(build, BuildStatus.SUCCEEDED, digest=pushed, tags=build.tags or ["latest"])
            return
        plan = build.plan
        if plan is None:
            self._finish(build, BuildStatus.FAILED, reason="the build has no plan")
            return
        written = plan
        try:
            plan, context, resolved = self._resolve(build, plan, self._context(plan))
            bases = self._base_digests(written, build, resolved)
        except BuildFailed as error:
            self._finish(build, BuildStatus.FAILED, reason=str(error))
            return
        tag = immutable_tag(build.id, self.clock())
        attempt = build.attempts + 1
        self._log(build, f"envhub: building {target.repository} with {self.builder.name}"
                  + (f" (attempt {attempt})" if attempt > 1 else ""))
        try:
            run_id = self.builder.start(build_id=build.id, plan=plan, context=context,
                                        targets=[target, target.with_tag(tag)], platform=build.platform,
                                        timeout=self.policy.timeout, agent_pool=build.agent_pool)
        except BuildFailed as error:
            self._finish(build, BuildStatus.FAILED, reason=str(error))
            return
        started = self._change(build.id, lambda b: None if b.run_id is not None or b.status.finished else {
            "status": BuildStatus.RUNNING, "run_id": run_id, "attempts": attempt, "log_offset": 0,
            "started_at": b.started_at or self.clock(), "builder": self.builder.name, "base_digests": bases,
            "resolved": resolved, "tags": ["latest", tag]})
        if started is None:  # another dispatch won the race, or the build ended meanwhile
            self.builder.cancel(run_id)
            return
        self.send(started, check=True, delay=self.policy.check_delay(started.checks))

    def _context(self, plan: BuildPlan) -> ContextSource:
        if self.templates is None and "{{" in plan.dockerfile:
            raise BuildFailed("the Dockerfile still has build-time templates such as {{latest-image-tag}}; "
                              "pin the base image tag to build it here", where=plan.dockerfile_path)
        if plan.context_digest is None:
            return GeneratedContext(plan)
        context = self.contexts.get(plan.context_digest)
        if context is None:
            raise BuildFailed(f"the build context {plan.context_digest} is no longer stored", where="build.context")
        return context

    def _resolve(self, build: BuildRecord, plan: BuildPlan,
                 context: ContextSource) -> tuple[BuildPlan, ContextSource, dict[str, str]]:
        """The plan and context with build-time templates replaced, and what each resolved to (logged)."""
        if self.templates is None:
            return plan, context, {}
        plan, context, resolved = self.templates.resolve(plan, context)  # Unavailable errors: the queue retries
        for written, value in resolved.items():
            self._log(build, resolution_line(written, value))
        return plan, context, resolved

    def _base_digests(self, plan: BuildPlan, build: BuildRecord, resolved: dict[str, str]) -> dict[str, str | None]:
        """Each base as the definition writes it (the patch scan looks it up so) -> the digest of what the build
        uses: for a template, the reference it resolved to."""
        digests: dict[str, str | None] = {}
        for base in base_images(plan.dockerfile, where=plan.dockerfile_path):
            used = resolved.get(base, base)
            named = base if used == base else f"{used} ({base})"
            try:
                digests[base] = self.registry.head(parse_image(used, default_registry=self.default_registry))
                self._log(build, f"envhub: base image {named} is {digests[base]}")
            except (RegistryUnavailable, EnvhubError) as error:
                digests[base] = None
                self._log(build, f"envhub: could not resolve base image {named}: {error}")
        return digests

    # -- check ----------------------------------------------------------------------------------

    def check(self, build_id: str, seq: int) -> None:
        """Follow a run: copy its new log, record its end, or look again later."""
        build = self.builds.get(build_id)
        if build is None or build.status.finished or build.checks != seq:
            return  # done, or a duplicate of a check already handled
        if build.run_id is None:
            self.dispatch(build_id)  # the run was never started (or was lost): start it
            return
        if build.cancel_requested:
            self.builder.cancel(build.run_id)
        status = self.builder.poll(build.run_id, build.log_offset)  # BuilderUnavailable: the queue retries
        run_id = build.run_id
        claimed = self._change(build_id, lambda b: None if b.checks != seq or b.run_id != run_id else {
            "checks": seq + 1, "log_offset": status.log_offset})
        if claimed is None:
            return  # another handler took this check
        if status.log:
            self.builds.append_log(build_id, status.log)
        if status.state.finished:
            self._ended(claimed, status)
        elif self._overdue(claimed):
            self.builder.cancel(run_id)
            self._finish(claimed, BuildStatus.FAILED,
                         reason=f"the build took longer than {self.policy.timeout:.0f} s and was stopped")
        else:
            self.send(claimed, check=True, delay=self.policy.check_delay(claimed.checks))

    def _ended(self, build: BuildRecord, status: RunStatus) -> None:
        if status.state is RunState.SUCCEEDED:
            self._finish(build, BuildStatus.SUCCEEDED, digest=status.digest, packages=status.packages)
        elif status.state is RunState.CANCELLED:
            self._finish(build, BuildStatus.CANCELLED, reason=status.reason or "the build was cancelled")
        elif status.state is RunState.FAILED:
            self._finish(build, BuildStatus.FAILED, reason=status.reason or "the build failed")
        elif build.attempts >= self.policy.max_attempts:
            self._finish(build, BuildStatus.FAILED,
                         reason=f"gave up after {build.attempts} attempts: {status.reason or 'the run was lost'}")
        else:
            # Not the definition's fault (the worker died, the registry was unreachable): said as such.
            self._log(build, f"envhub: attempt {build.attempts} was interrupted "
                             f"({status.reason or 'the run was lost'}); starting attempt {build.attempts + 1}")
            again = self._change(build.id, lambda b: None if b.run_id != build.run_id else {
                "run_id": None, "status": BuildStatus.QUEUED})
            if again is not None:
                self.send(again, check=False)  # a message, not a call: durable if starting fails now

    def _overdue(self, build: BuildRecord) -> bool:
        # The builder enforces the timeout itself; this is the backstop for one that does not report.
        grace = max(60.0, 2 * self.policy.check_max)
        return build.started_at is not None and \
            self.clock() - build.started_at > timedelta(seconds=self.policy.timeout + grace)

    # -- cancel and recovery --------------------------------------------------------------------

    def cancel(self, build_id: str) -> BuildRecord | None:
        """Cancel a build: at once when no run has started, at the next check (sent now) when running."""
        build = self.builds.request_cancel(build_id)
        if build is None or build.status.finished:
            return build
        if build.run_id is None:
            finished = self._finish(build, BuildStatus.CANCELLED, reason="cancelled before it started")
            return finished or self.builds.get(build_id)
        self.send(build, check=True)
        return build

    def recover(self) -> int:
        """Re-send the next step of every unfinished build that nothing has touched for a while (its
        message was lost); return how many. Duplicates are harmless: steps are idempotent."""
        idle_since = self.clock() - timedelta(seconds=self.policy.stale_after)
        recovered = self.builds.unfinished(idle_since=idle_since)
        for build in recovered:
            log.warning("build %s (%s) untouched since %s: sending its next step again", build.id, build.status,
                        build.updated_at)
            self.send(build, check=build.run_id is not None)
        return len(recovered)

    # -- records --------------------------------------------------------------------------------

    def _change(self, build_id: str, changes: Callable[[BuildRecord], dict[str, object] | None]) -> BuildRecord | None:
        """Read-modify-write under the store's optimistic concurrency; `changes` returns None to give up."""
        return optimistic.change(f"build {build_id}", lambda: self.builds.get(build_id), self.builds.update, changes,
                                 attempts=MAX_CAS_ATTEMPTS)

    def _cancel_run(self, build: BuildRecord) -> None:
        try:
            if build.run_id is not None:
                self.builder.cancel(build.run_id)
        except EnvhubError as error:
            log.warning("could not cancel run %s of build %s: %s", build.run_id, build.id, error)

    def _log(self, build: BuildRecord, line: str) -> None:
        self.builds.append_log(build.id, [line])

    def _finish(self, build: BuildRecord, status: BuildStatus, *, reason: str | None = None,
                **outcome: object) -> BuildRecord | None:
        current = self.builds.get(build.id)
        if current is None or current.status.finished:
            return None
        # The last log line goes in before the status: a reader that sees the build finished has its whole log.
        self._log(build, f"envhub: build {status.value}" + (f": {reason}" if reason else ""))
        done = self._change(build.id, lambda b: None if b.status.finished else {
            "status": status, "finished_at": self.clock(), "reason": reason, **outcome})
        if done is not None:
            log.info("build %s of %s %s%s", build.id, build.image, status.value, f": {reason}" if reason else "")
            for listener in self.listeners:
                try:
                    listener(done)
                except Exception:  # the build's own outcome is recorded either way
                    log.exception("a listener of build %s failed", build.id)
        return done
