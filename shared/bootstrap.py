"""The composition root's helper: build every service from settings, choosing adapters once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.adapters.file_contexts import FileContextStore
from shared.adapters.sqlite_store import SqliteStore
from shared.services.catalog import Catalog
from shared.services.contexts import ContextService, Limits
from shared.services.environments import EnvironmentService
from shared.services.jobs import JobService
from shared.settings import Settings


@dataclass(frozen=True)
class Services:
    """The use cases an entry point (HTTP, CLI, queue, timer) may call."""

    settings: Settings
    environments: EnvironmentService
    contexts: ContextService
    jobs: JobService
    catalog: Catalog


def build_services(settings: Settings) -> Services:
    """Wire adapters to use cases for these settings."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = SqliteStore(settings.data_dir / "envhub.db")
    contexts = ContextService(
        store=FileContextStore(settings.data_dir / "contexts"),
        limits=Limits(max_expanded_bytes=settings.max_context_bytes, max_files=settings.max_context_files),
    )
    catalog = Catalog.load(settings.curated_dir, contexts)
    environments = EnvironmentService(store=store, contexts=contexts, catalog=catalog)
    jobs = JobService(store=store, environments=environments)
    return Services(settings=settings, environments=environments, contexts=contexts, jobs=jobs, catalog=catalog)
