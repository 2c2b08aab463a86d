"""The composition root's helper: build every service from settings, choosing adapters once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.adapters.buildah import BuildahBuilder
from shared.adapters.file_contexts import FileContextStore
from shared.adapters.oci_registry import OciRegistry
from shared.adapters.sqlite_builds import SqliteBuildStore
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_queue import SqliteQueue
from shared.adapters.sqlite_store import SqliteStore
from shared.ports import Queue, Registry
from shared.services.building import BuildService
from shared.services.catalog import Catalog
from shared.services.contexts import ContextService, Limits
from shared.services.environments import EnvironmentService
from shared.services.images import ImageService
from shared.services.jobs import JobService
from shared.services.worker import QueueWorker, WorkerPolicy
from shared.settings import Settings

BUILD_QUEUE = "build-requests"


@dataclass(frozen=True)
class Services:
    """The use cases an entry point (HTTP, CLI, queue, timer) may call."""

    settings: Settings
    environments: EnvironmentService
    contexts: ContextService
    jobs: JobService
    catalog: Catalog
    images: ImageService
    building: BuildService
    registry: Registry
    queue: Queue
    worker: QueueWorker


def make_registry(settings: Settings) -> Registry:
    """The registry adapter the settings name."""
    if settings.registry_kind == "acr":
        from shared.adapters.acr_registry import AcrRegistry  # Azure SDKs load only where they are used

        return AcrRegistry(settings.registry_host)
    return OciRegistry(insecure_registries=settings.insecure)


def build_services(settings: Settings) -> Services:
    """Wire adapters to use cases for these settings."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    database = Database(settings.data_dir / "envhub.db")
    store = SqliteStore(database)
    contexts = ContextService(
        store=FileContextStore(settings.data_dir / "contexts"),
        limits=Limits(max_expanded_bytes=settings.max_context_bytes, max_files=settings.max_context_files),
    )
    catalog = Catalog.load(settings.curated_dir, contexts)
    environments = EnvironmentService(store=store, contexts=contexts, catalog=catalog)
    jobs = JobService(store=store, environments=environments)
    builds = SqliteBuildStore(database)
    queue = SqliteQueue(database, BUILD_QUEUE)
    registry = make_registry(settings)
    images = ImageService(environments=environments, contexts=contexts, builds=builds, queue=queue,
                          registry=registry, registry_host=settings.registry_host,
                          default_registry=settings.default_registry)
    building = BuildService(
        builds=builds, environments=environments, contexts=contexts, registry=registry,
        builder=BuildahBuilder(settings.data_dir / "buildah", insecure_registries=settings.insecure,
                               unqualified_registry=settings.default_registry),
        registry_host=settings.registry_host, default_registry=settings.default_registry,
        work_dir=settings.data_dir / "builds", timeout=settings.build_timeout_seconds,
    )
    worker = QueueWorker(queue, building.handle_message, building.give_up, WorkerPolicy(
        visibility_timeout=settings.queue_visibility_seconds, max_attempts=settings.queue_max_attempts,
        backoff_base=settings.queue_backoff_seconds))
    return Services(settings=settings, environments=environments, contexts=contexts, jobs=jobs, catalog=catalog,
                    images=images, building=building, registry=registry, queue=queue, worker=worker)
