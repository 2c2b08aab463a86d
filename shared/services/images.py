"""Ensuring an environment's image: look it up by hash in the registry, or start (or join) its build."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.domain.builds import BuildRecord, BuildStatus, new_build_id
from shared.domain.definition import Kind
from shared.domain.errors import NotFound, QueueUnavailable
from shared.domain.images import ImageRef, environment_image, parse_image
from shared.domain.plans import BuildPlan, plan_for
from shared.domain.records import EnvironmentRecord
from shared.ports import BuildStore, Registry
from shared.services.building import BuildService
from shared.services.contexts import ContextService
from shared.services.environments import EnvironmentService

log = logging.getLogger(__name__)
LATEST_TAG = "latest"


@dataclass(frozen=True)
class Ensured:
    """Either the image exists (digest set) or a build is running for it (build set)."""

    image: str
    digest: str | None
    build: BuildRecord | None
    created: bool = False  # whether this call started the build


@dataclass(frozen=True)
class ImageDetails:
    """What Azure ML's get_image_details tells, and envhub's build facts."""

    image: str
    exists: bool
    digest: str | None
    dockerfile: str | None
    build: BuildRecord | None
    user_image: bool
    # Build-time templates as the latest build resolved them: the text as written -> what it built from.
    resolved: dict[str, str] = field(default_factory=dict)


class ImageService:
    """Cache lookups and build requests."""

    def __init__(self, *, environments: EnvironmentService, contexts: ContextService, builds: BuildStore,
                 building: BuildService, registry: Registry, registry_host: str, default_registry: str,
                 build_compute: dict[str, str] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.environments = environments
        self.contexts = contexts
        self.builds = builds
        self.building = building
        self.build_compute = build_compute or {}
        self.registry = registry
        self.registry_host = registry_host
        self.default_registry = default_registry
        self.clock = clock

    def target(self, record: EnvironmentRecord, tag: str = LATEST_TAG) -> ImageRef:
        """Where the environment's image lives: <registry>/azureml/azureml_<32 hex>:<tag>."""
        return environment_image(self.registry_host, record.description.image, tag)

    def ensure(self, *, workspace: str, name: str, version: str) -> Ensured:
        """A hit answers with the digest; a miss starts a build, or joins the one running for this hash.
        A registry that cannot answer raises RegistryUnavailable and nothing is queued."""
        record = self.environments.get(workspace=workspace, name=name, version=version)
        if record.definition.kind is Kind.USER_IMAGE:
            return self._user_image(record)
        target = self.target(record)
        digest = self.registry.head(target)
        if digest is not None:
            log.debug("cache hit for %s:%s: %s@%s", name, record.version, target, digest)
            return Ensured(image=str(target), digest=digest, build=None)
        build, created = self._start(self._new_build(record))
        if created:
            log.info("cache miss for %s:%s: build %s queued", name, record.version, build.id)
        return Ensured(image=str(target), digest=None, build=build, created=created)

    def rebuild(self, record: EnvironmentRecord, *, reason: str) -> BuildRecord | None:
        """Build the environment's image again although it exists (its base moved): the new build pushes a new
        immutable tag and moves `:latest`. Joins a build of the hash already running; None for user images."""
        if record.definition.kind is Kind.USER_IMAGE:
            return None
        replaces = self.registry.head(self.target(record))
        build, created = self._start(self._new_build(record).model_copy(update={"replaces": replaces}))
        if created:
            self.building.builds.append_log(build.id, [f"envhub: rebuilding: {reason}"])
            log.info("rebuild of %s:%s queued as build %s: %s", record.name, record.version, build.id, reason)
        return build

    def current_digest(self, record: EnvironmentRecord) -> str | None:
        """What the environment's image is now (for a user image, the image it names)."""
        if record.definition.kind is Kind.USER_IMAGE:
            assert record.definition.image is not None
            return self.registry.head(parse_image(record.definition.image, default_registry=self.default_registry))
        return self.registry.head(self.target(record))

    def _start(self, new: BuildRecord) -> tuple[BuildRecord, bool]:
        build, created = self.builds.start_or_join(new)
        if created:
            try:
                self.building.send(build, check=False)
            except Exception as error:
                # A build nobody will run must not hold the hash: later requests would join it forever.
                self.builds.update(build.model_copy(update={
                    "status": BuildStatus.FAILED, "finished_at": self.clock(), "reason": f"could not queue: {error}"}))
                raise QueueUnavailable(f"the build queue did not take the request ({error}); retry",
                                       where="queue") from error
        return build, created

    def _user_image(self, record: EnvironmentRecord) -> Ensured:
        assert record.definition.image is not None
        ref = parse_image(record.definition.image, default_registry=self.default_registry)
        digest = self.registry.head(ref)
        if digest is None:
            raise NotFound(f"the image '{record.definition.image}' does not exist in its registry; envhub does "
                           "not build user images", where="image")
        return Ensured(image=str(ref), digest=digest, build=None)

    def plan(self, record: EnvironmentRecord) -> BuildPlan:
        """How the environment's image is built: the one place a plan is made (a build stores it)."""
        definition = record.definition
        dockerfile = None
        if definition.build is not None:
            context = self.contexts.get(definition.build.context)
            if context is None:
                raise NotFound(f"the build context {definition.build.context} is no longer stored",
                               where="build.context")
            dockerfile = context.read_text(definition.build.dockerfile)
        return plan_for(definition, record.description.hash, dockerfile)

    def _new_build(self, record: EnvironmentRecord) -> BuildRecord:
        return BuildRecord(id=new_build_id(), hash=record.description.hash, workspace=record.workspace,
                           environment_name=record.name, environment_version=record.version,
                           image=record.description.image, created_at=self.clock(), plan=self.plan(record),
                           platform=record.definition.os_type or "linux",
                           agent_pool=self.build_compute.get(record.workspace))

    def details(self, *, workspace: str, name: str, version: str) -> ImageDetails:
        """Whether the image exists, its digest, the Dockerfile that builds it, and its latest build."""
        record = self.environments.get(workspace=workspace, name=name, version=version)
        if record.definition.kind is Kind.USER_IMAGE:
            assert record.definition.image is not None
            ref = parse_image(record.definition.image, default_registry=self.default_registry)
            digest = self.registry.head(ref)
            return ImageDetails(image=str(ref), exists=digest is not None, digest=digest, dockerfile=None,
                                build=None, user_image=True)
        target = self.target(record)
        digest = self.registry.head(target)
        build = self.builds.latest_for_hash(record.description.hash)
        dockerfile = build.dockerfile if build is not None and build.dockerfile else self.plan(record).dockerfile
        return ImageDetails(image=str(target), exists=digest is not None, digest=digest, dockerfile=dockerfile,
                            build=build, user_image=False, resolved={} if build is None else dict(build.resolved))

    def get_build(self, workspace: str, build_id: str) -> BuildRecord:
        """One build record, seen only from a workspace with an environment of that hash (the image cache is
        shared across workspaces; what was built, and its log, are not)."""
        build = self.builds.get(build_id)
        if build is None or not self.environments.knows_hash(workspace, build.hash):
            raise NotFound(f"no build '{build_id}'", where=build_id)
        return build

    def read_log(self, workspace: str, build_id: str, offset: int) -> tuple[BuildRecord, list[str]]:
        """A build and its log lines from `offset`."""
        return self.get_build(workspace, build_id), self.builds.read_log(build_id, offset)

    def cancel(self, workspace: str, build_id: str) -> BuildRecord:
        """Cancel a build: at once when no run has started, within a check when one is running."""
        self.get_build(workspace, build_id)
        build = self.building.cancel(build_id)
        if build is None:
            raise NotFound(f"no build '{build_id}'", where=build_id)
        return build
