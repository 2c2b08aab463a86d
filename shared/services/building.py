"""Running a queued build: idempotent, so a redelivered message finishes the job instead of repeating it."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from shared.domain.builds import BuildRecord, BuildRequest, BuildStatus, immutable_tag
from shared.domain.definition import Definition
from shared.domain.errors import BuildCancelled, BuildFailed, EnvhubError, RegistryUnavailable
from shared.domain.images import ImageRef, environment_image, parse_image
from shared.domain.plans import BuildPlan, plan_for
from shared.ports import Builder, BuildStore, QueueMessage, Registry
from shared.services.contexts import ContextService
from shared.services.environments import EnvironmentService

log = logging.getLogger(__name__)


class BuildService:
    """Handles build requests from the queue."""

    def __init__(self, *, builds: BuildStore, environments: EnvironmentService, contexts: ContextService,
                 registry: Registry, builder: Builder, registry_host: str, default_registry: str,
                 work_dir: Path, timeout: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.builds = builds
        self.environments = environments
        self.contexts = contexts
        self.registry = registry
        self.builder = builder
        self.registry_host = registry_host
        self.default_registry = default_registry
        self.work_dir = work_dir
        self.timeout = timeout
        self.clock = clock

    def handle_message(self, message: QueueMessage) -> None:
        """The queue's entry point."""
        self.handle(BuildRequest.model_validate_json(message.body))

    def give_up(self, message: QueueMessage, reason: str) -> None:
        """Record the build as failed when its message is poisoned."""
        request = BuildRequest.model_validate_json(message.body)
        build = self.builds.get(request.build_id)
        if build is not None and not build.status.finished:
            self._finish(build, BuildStatus.FAILED, reason=f"gave up after {message.dequeue_count} attempts: {reason}")

    def handle(self, request: BuildRequest) -> None:
        """Build unless already done; a fault that is worth a retry propagates (the queue redelivers)."""
        build = self.builds.get(request.build_id)
        if build is None or build.status.finished:
            return
        if build.cancel_requested:
            self._finish(build, BuildStatus.CANCELLED, reason="cancelled before it started")
            return
        target = environment_image(self.registry_host, build.image)
        pushed = self.registry.head(target)  # RegistryUnavailable propagates: retried later
        if pushed is not None:
            # An earlier attempt pushed the image and died before recording it.
            self._log(build, f"envhub: {target} already exists ({pushed}); nothing to build")
            self._finish(build.model_copy(update={"digest": pushed, "tags": build.tags or ["latest"]}),
                         BuildStatus.SUCCEEDED)
            return
        build = build.model_copy(update={"status": BuildStatus.RUNNING, "attempts": build.attempts + 1,
                                         "started_at": build.started_at or self.clock(),
                                         "builder": self.builder.name})
        self.builds.update(build)
        if build.attempts > 1:
            self._log(build, f"envhub: attempt {build.attempts} (an earlier attempt stopped without finishing)")
        try:
            self._build(build, target)
        except BuildFailed as error:
            self._finish(self.builds.get(build.id) or build, BuildStatus.FAILED, reason=str(error))
        except BuildCancelled as error:
            self._finish(self.builds.get(build.id) or build, BuildStatus.CANCELLED, reason=str(error))

    def _build(self, build: BuildRecord, target: ImageRef) -> None:
        record = self.environments.get(workspace=build.workspace, name=build.environment_name,
                                       version=build.environment_version)
        folder = Path(tempfile.mkdtemp(prefix=f"build-{build.id[:12]}-", dir=self._work()))
        try:
            plan = self._materialise(record.definition, build, folder)
            if "{{" in plan.dockerfile:
                raise BuildFailed("the Dockerfile still has build-time templates such as {{latest-image-tag}}; "
                                  "pin the base image tag to build it here", where=plan.dockerfile_path)
            bases = self._base_digests(record.description.base_images, build)
            build = build.model_copy(update={"base_digests": bases})
            self.builds.update(build)
            tag = immutable_tag(build.id, self.clock())
            self._log(build, f"envhub: building {target.repository} with {self.builder.name}")
            built = self.builder.build(
                context=folder, dockerfile=plan.dockerfile_path, targets=[target, target.with_tag(tag)],
                log=lambda line: self._log(build, line), timeout=self.timeout,
                cancelled=lambda: bool((b := self.builds.get(build.id)) and b.cancel_requested),
            )
            self._finish(build.model_copy(update={"digest": built.digest, "tags": ["latest", tag],
                                                  "packages": built.packages}), BuildStatus.SUCCEEDED)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _materialise(self, definition: Definition, build: BuildRecord, folder: Path) -> BuildPlan:
        """Write the build context (uploaded or generated) into `folder`; return the plan it serves."""
        if definition.build is not None:
            context = self.contexts.get(definition.build.context)
            if context is None:
                raise BuildFailed(f"the build context {definition.build.context} is no longer stored",
                                  where="build.context")
            for entry in context.manifest.files:
                path = folder / entry.path
                path.parent.mkdir(parents=True, exist_ok=True)
                with context.open(entry.path) as source, path.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                path.chmod(0o755 if entry.executable else 0o644)
            for rel in context.manifest.dirs:
                (folder / rel).mkdir(parents=True, exist_ok=True)
            return plan_for(definition, build.hash, context.read_text(definition.build.dockerfile))
        plan = plan_for(definition, build.hash)
        for generated in plan.generated:
            path = folder / generated.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(generated.content)
        (folder / plan.dockerfile_path).write_text(plan.dockerfile)
        return plan

    def _base_digests(self, bases: list[str], build: BuildRecord) -> dict[str, str | None]:
        digests: dict[str, str | None] = {}
        for base in bases:
            try:
                digests[base] = self.registry.head(parse_image(base, default_registry=self.default_registry))
                self._log(build, f"envhub: base image {base} is {digests[base]}")
            except (RegistryUnavailable, EnvhubError) as error:
                digests[base] = None
                self._log(build, f"envhub: could not resolve base image {base}: {error}")
        return digests

    def _work(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def _log(self, build: BuildRecord, line: str) -> None:
        self.builds.append_log(build.id, [line])

    def _finish(self, build: BuildRecord, status: BuildStatus, reason: str | None = None) -> None:
        done = build.model_copy(update={"status": status, "finished_at": self.clock(), "reason": reason})
        self.builds.update(done)
        self._log(done, f"envhub: build {status.value}" + (f": {reason}" if reason else ""))
        log.info("build %s of %s %s%s", build.id, build.image, status.value, f": {reason}" if reason else "")
