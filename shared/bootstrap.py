"""The composition root: every port's adapter chosen once from settings (or passed in), wired to the use cases."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

from shared import factories
from shared.adapters.curated_folder import FolderCatalog
from shared.adapters.pip_index import PipIndex
from shared.health import HealthMonitor
from shared.ports import CuratedCatalog, QueueConsumer, QueueMessage, Registry
from shared.services.access import AccessService
from shared.services.building import BuildPolicy, BuildService
from shared.services.contexts import ContextService, Limits
from shared.services.datastores import DatastoreService
from shared.services.deployments import DeploymentService
from shared.services.environments import EnvironmentService
from shared.services.findings import FindingService
from shared.services.images import ImageService
from shared.services.intake import Intake, IntakeQueues
from shared.services.jobs import JobService
from shared.services.scan_conclusions import Concluder, RebuildPolicy
from shared.services.scanning import ScanService
from shared.services.templates import TemplateResolver
from shared.settings import Settings


@dataclass(frozen=True)
class PortInfo:
    """Which adapter serves a port, and the adapter itself (for its health probe)."""

    kind: str
    adapter: Any


@dataclass(frozen=True)
class Consumer:
    """A queue to drain, what handles its messages, and what records a message given up on."""

    queue: QueueConsumer
    handle: Callable[[QueueMessage], None]
    give_up: Callable[[QueueMessage, str], None]


@dataclass(frozen=True)
class Services:
    """The use cases an entry point (HTTP, CLI, queue, timer) may call, and what serves each port."""

    settings: Settings
    environments: EnvironmentService
    contexts: ContextService
    jobs: JobService
    images: ImageService
    building: BuildService
    registry: Registry
    catalog: CuratedCatalog
    deployments: DeploymentService
    scanning: ScanService
    findings: FindingService
    access: AccessService
    datastores: DatastoreService
    intake: Intake
    ports: dict[str, PortInfo] = field(default_factory=dict)
    # Each queue's receiving side and its handlers, for a local consumer (in Azure the queue triggers consume).
    consumers: dict[str, Consumer] = field(default_factory=dict)

    @property
    def consumer(self) -> QueueConsumer | None:
        """The build queue's receiving side."""
        build = self.consumers.get("build")
        return None if build is None else build.queue

    def health(self) -> dict[str, dict[str, Any]]:
        """Each port's adapter kind and whether its backend answers (a report at most a second or so old)."""
        return self.monitor.report()

    @cached_property
    def monitor(self) -> HealthMonitor:
        """The ports' health, probed at most once a second whatever the request rate."""
        return HealthMonitor(self.ports, annotate=self._annotate)

    def _annotate(self, port: str, entry: dict[str, Any]) -> None:
        if port == "registry":
            entry["host"] = self.settings.registry_host  # where environment images live


def build_services(settings: Settings, **overrides: Any) -> Services:
    """Wire adapters to use cases. Each port of factories.FACTORIES (and 'catalog') takes its adapter from
    `overrides` when given (tests pass fakes), else from the factory its setting names."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The Azure SDKs and httpx log every request at INFO: envhub's own lines would drown in them.
    for chatty in ("azure", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    unknown = set(overrides) - {*factories.FACTORIES, "catalog"}
    if unknown:
        raise TypeError(f"no such port: {', '.join(sorted(unknown))}")
    ports = {name: PortInfo(kind="override" if name in overrides else factories.kind_of(name, settings),
                            adapter=overrides[name] if name in overrides else factories.make(name, settings))
             for name in factories.FACTORIES}
    adapter = {name: info.adapter for name, info in ports.items()}
    contexts = ContextService(store=adapter["contexts"], limits=Limits(
        max_expanded_bytes=settings.max_context_bytes, max_files=settings.max_context_files))
    catalog = overrides.get("catalog") or FolderCatalog.load(settings.curated_dir, adapter["contexts"])
    environments = EnvironmentService(store=adapter["store"], contexts=contexts, catalog=catalog,
                                      allowed=settings.allowed)
    jobs = JobService(store=adapter["store"], environments=environments)
    building = BuildService(
        builds=adapter["builds"], contexts=contexts, registry=adapter["registry"], builder=adapter["builder"],
        queue=adapter["queue"], registry_host=settings.registry_host, default_registry=settings.default_registry,
        policy=BuildPolicy(timeout=settings.build_timeout_seconds, check_first=settings.build_check_seconds,
                           check_max=settings.build_check_max_seconds, stale_after=settings.build_stale_seconds,
                           max_attempts=settings.queue_max_attempts),
        # Curated Dockerfiles' {{latest-image-tag}} and {{latest-pypi-version}}, resolved at build time; image
        # digests remembered in the scan store, as the patch scan remembers them.
        templates=TemplateResolver(adapter["registry"], adapter["scans"], PipIndex(), settings.default_registry))
    images = ImageService(environments=environments, contexts=contexts, builds=adapter["builds"], building=building,
                          registry=adapter["registry"], registry_host=settings.registry_host,
                          default_registry=settings.default_registry, build_compute=settings.build_compute)
    deployments = DeploymentService(store=adapter["deployments"], jobs=jobs, images=images)
    concluder = Concluder(scans=adapter["scans"], builds=adapter["builds"], deployments=adapter["deployments"],
                          environments=environments, images=images, notifier=adapter["notifier"],
                          default_registry=settings.default_registry,
                          policy=RebuildPolicy(default=settings.auto_rebuild, workspaces=settings.rebuild_policy))
    scanning = ScanService(store=adapter["store"], catalog=catalog, scans=adapter["scans"],
                           registry=adapter["registry"], queue=adapter["scan_queue"], concluder=concluder,
                           default_registry=settings.default_registry)
    access = AccessService(tokens=adapter["tokens"], audit=adapter["audit"])
    intake = Intake(environments=environments, jobs=jobs, images=images, builds=adapter["builds"],
                    inbox=adapter["inbox"], replies=adapter["replies"], access=access,
                    max_bytes=settings.max_message_bytes, queues=IntakeQueues(
                        registrations=settings.registration_queue, submissions=settings.submission_queue,
                        own=frozenset({settings.build_queue, settings.scan_queue, settings.registration_queue,
                                       settings.submission_queue}), webhooks=settings.webhooks))
    building.listeners.append(intake.build_finished)
    drained: list[tuple[str, str, Callable[[QueueMessage], None], Callable[[QueueMessage, str], None]]] = [
        ("build", "queue", building.handle_message, building.give_up),
        ("scan", "scan_queue", scanning.handle_message, scanning.give_up),
        *((queue, port, partial(intake.handle, queue), partial(intake.give_up, queue)) for queue, port in (
            (settings.registration_queue, "registration_queue"), (settings.submission_queue, "submission_queue")))]
    consumers = {name: Consumer(adapter[port], handle, give_up) for name, port, handle, give_up in drained
                 if hasattr(adapter[port], "receive")}
    return Services(settings=settings, environments=environments, contexts=contexts, jobs=jobs, images=images,
                    building=building, registry=adapter["registry"], catalog=catalog, ports=ports,
                    consumers=consumers, deployments=deployments, scanning=scanning,
                    findings=FindingService(scans=adapter["scans"]),
                    access=access, intake=intake,
                    datastores=DatastoreService(area=adapter["uploads"], contexts=contexts,
                                                container_prefix=settings.datastore_container_prefix))
