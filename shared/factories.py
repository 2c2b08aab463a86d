"""One factory per adapter, each importing its adapter only when chosen (the Azure SDKs load only in Azure)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from shared.settings import Settings


@cache
def _database(path: Path) -> Any:
    from shared.adapters.sqlite_db import Database

    return Database(path)


def sqlite_database(settings: Settings) -> Any:
    """The one SQLite file the local adapters share."""
    return _database((settings.data_dir / "envhub.db").resolve())


def sqlite_store(settings: Settings) -> Any:
    from shared.adapters.sqlite_store import SqliteStore

    return SqliteStore(sqlite_database(settings))


def sqlite_builds(settings: Settings) -> Any:
    from shared.adapters.sqlite_builds import SqliteBuildStore

    return SqliteBuildStore(sqlite_database(settings))


_COSMOS: dict[tuple[object, ...], Any] = {}


def cosmos_database(settings: Settings) -> Any:
    """One client per account and database for both Cosmos adapters (a client contacts the account at once)."""
    from shared.adapters.cosmos_common import connect

    key = (settings.cosmos_endpoint, settings.cosmos_database, settings.cosmos_key, settings.cosmos_create)
    if key not in _COSMOS:
        _COSMOS[key] = connect(settings)
    return _COSMOS[key]


def cosmos_store(settings: Settings) -> Any:
    from shared.adapters.cosmos_store import CosmosStore

    return CosmosStore(cosmos_database(settings))


def cosmos_builds(settings: Settings) -> Any:
    from shared.adapters.cosmos_builds import CosmosBuildStore

    return CosmosBuildStore(cosmos_database(settings))


def file_contexts(settings: Settings) -> Any:
    from shared.adapters.file_contexts import FileContextStore

    return FileContextStore(settings.data_dir / "contexts")


def blob_contexts(settings: Settings) -> Any:
    from shared.adapters.blob_contexts import BlobContextStore

    return BlobContextStore.from_settings(settings)


def no_uploads(settings: Settings) -> Any:
    from shared.adapters.no_uploads import NoUploadArea

    return NoUploadArea()


def blob_uploads(settings: Settings) -> Any:
    from shared.adapters.blob_uploads import BlobUploadArea

    return BlobUploadArea.from_settings(settings)


def sqlite_queue(settings: Settings) -> Any:
    from shared.adapters.sqlite_queue import SqliteQueue

    return SqliteQueue(sqlite_database(settings), settings.build_queue)


def storage_queue(settings: Settings) -> Any:
    from shared.adapters.storage_queue import StorageQueue

    return StorageQueue.from_settings(settings, settings.build_queue)


def named_queue(settings: Settings, name: str) -> Any:
    """The queue `name` of the backend the settings choose (what `envhub queue` sends to and reads from)."""
    if settings.queue == "storage":
        from shared.adapters.storage_queue import StorageQueue

        return StorageQueue.from_settings(settings, name)
    from shared.adapters.sqlite_queue import SqliteQueue

    return SqliteQueue(sqlite_database(settings), name)


def sqlite_registration_queue(settings: Settings) -> Any:
    from shared.adapters.sqlite_queue import SqliteQueue

    return SqliteQueue(sqlite_database(settings), settings.registration_queue)


def storage_registration_queue(settings: Settings) -> Any:
    from shared.adapters.storage_queue import StorageQueue

    return StorageQueue.from_settings(settings, settings.registration_queue)


def sqlite_submission_queue(settings: Settings) -> Any:
    from shared.adapters.sqlite_queue import SqliteQueue

    return SqliteQueue(sqlite_database(settings), settings.submission_queue)


def storage_submission_queue(settings: Settings) -> Any:
    from shared.adapters.storage_queue import StorageQueue

    return StorageQueue.from_settings(settings, settings.submission_queue)


def queue_replies(settings: Settings) -> Any:
    from shared.adapters.replies import QueueReplies

    return QueueReplies(lambda name: reply_queue(settings, name), webhooks=settings.webhooks)


def reply_queue(settings: Settings, name: str) -> Any:
    """A queue replies go to: made when missing (it is the sender's; sending to a missing one would fail)."""
    queue = named_queue(settings, name)
    if settings.queue == "storage":
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            queue.client.create_queue()
    return queue


def buildah(settings: Settings) -> Any:
    from shared.adapters.buildah import BuildahBuilder

    return BuildahBuilder(settings.data_dir / "buildah", insecure_registries=settings.insecure,
                          unqualified_registry=settings.default_registry, parallel=settings.build_parallel,
                          allowed=settings.allowed)


def acr_tasks(settings: Settings) -> Any:
    from shared.adapters.acr_tasks import AcrTasksBuilder

    return AcrTasksBuilder.from_settings(settings)


def sqlite_deployments(settings: Settings) -> Any:
    from shared.adapters.sqlite_deployments import SqliteDeploymentStore

    return SqliteDeploymentStore(sqlite_database(settings))


def cosmos_deployments(settings: Settings) -> Any:
    from shared.adapters.cosmos_deployments import CosmosDeploymentStore

    return CosmosDeploymentStore(cosmos_database(settings))


def sqlite_scans(settings: Settings) -> Any:
    from shared.adapters.sqlite_scans import SqliteScanStore

    return SqliteScanStore(sqlite_database(settings))


def cosmos_scans(settings: Settings) -> Any:
    from shared.adapters.cosmos_scans import CosmosScanStore

    return CosmosScanStore(cosmos_database(settings))


def sqlite_tokens(settings: Settings) -> Any:
    from shared.adapters.sqlite_access import SqliteTokenStore

    return SqliteTokenStore(sqlite_database(settings))


def cosmos_tokens(settings: Settings) -> Any:
    from shared.adapters.cosmos_access import CosmosTokenStore

    return CosmosTokenStore(cosmos_database(settings))


def sqlite_audit(settings: Settings) -> Any:
    from shared.adapters.sqlite_access import SqliteAuditLog

    return SqliteAuditLog(sqlite_database(settings))


def cosmos_audit(settings: Settings) -> Any:
    from shared.adapters.cosmos_access import CosmosAuditLog

    return CosmosAuditLog(cosmos_database(settings))


def sqlite_inbox(settings: Settings) -> Any:
    from shared.adapters.sqlite_inbox import SqliteInboxStore

    return SqliteInboxStore(sqlite_database(settings))


def cosmos_inbox(settings: Settings) -> Any:
    from shared.adapters.cosmos_inbox import CosmosInboxStore

    return CosmosInboxStore(cosmos_database(settings))


def sqlite_scan_queue(settings: Settings) -> Any:
    from shared.adapters.sqlite_queue import SqliteQueue

    return SqliteQueue(sqlite_database(settings), settings.scan_queue)


def storage_scan_queue(settings: Settings) -> Any:
    from shared.adapters.storage_queue import StorageQueue

    return StorageQueue.from_settings(settings, settings.scan_queue)


def no_notifier(settings: Settings) -> Any:
    from shared.adapters.webhook import NoNotifier

    return NoNotifier()


def webhook(settings: Settings) -> Any:
    from shared.adapters.webhook import WebhookNotifier

    assert settings.scan_webhook is not None  # chosen only when it is set
    return WebhookNotifier(settings.scan_webhook, format=settings.scan_webhook_format)


def _breaker(settings: Settings) -> dict[str, Any]:
    """The circuit breaker's deadline and thresholds, from the settings."""
    return {"deadline": settings.registry_deadline_seconds, "failures": settings.registry_breaker_failures,
            "cooldown": settings.registry_breaker_cooldown_seconds}


def oci_registry(settings: Settings) -> Any:
    from shared.adapters.circuit import CircuitBreakerRegistry
    from shared.adapters.oci_registry import OciRegistry

    # A total deadline per lookup and a circuit breaker per registry host, in a small pool of its own threads.
    return CircuitBreakerRegistry(OciRegistry(insecure_registries=settings.insecure, home=settings.registry_host,
                                              allowed=settings.allowed), home=settings.registry_host,
                                  **_breaker(settings))


def acr_registry(settings: Settings) -> Any:
    from shared.adapters.acr_registry import AcrRegistry
    from shared.adapters.circuit import CircuitBreakerRegistry
    from shared.adapters.oci_registry import OciRegistry
    from shared.adapters.routed_registry import RoutedRegistry

    # An insecure (http) registry is only ever a local stand-in for ACR; ACR itself is always https.
    host = settings.registry_host
    acr = AcrRegistry(f"http://{host}" if host in settings.insecure else host)
    return CircuitBreakerRegistry(
        RoutedRegistry(host, acr, OciRegistry(insecure_registries=settings.insecure, allowed=settings.allowed),
                       allowed=settings.allowed), home=host, **_breaker(settings))


# port -> (the setting that chooses, kind -> factory). The only place that knows which adapters exist.
FACTORIES: dict[str, tuple[str, dict[str, Callable[[Settings], Any]]]] = {
    "store": ("store", {"sqlite": sqlite_store, "cosmos": cosmos_store}),
    "builds": ("store", {"sqlite": sqlite_builds, "cosmos": cosmos_builds}),
    "contexts": ("contexts", {"file": file_contexts, "blob": blob_contexts}),
    "uploads": ("contexts", {"file": no_uploads, "blob": blob_uploads}),
    "queue": ("queue", {"sqlite": sqlite_queue, "storage": storage_queue}),
    "builder": ("builder", {"buildah": buildah, "acr_tasks": acr_tasks}),
    "registry": ("registry_kind", {"oci": oci_registry, "acr": acr_registry}),
    "deployments": ("store", {"sqlite": sqlite_deployments, "cosmos": cosmos_deployments}),
    "scans": ("store", {"sqlite": sqlite_scans, "cosmos": cosmos_scans}),
    "scan_queue": ("queue", {"sqlite": sqlite_scan_queue, "storage": storage_scan_queue}),
    "tokens": ("store", {"sqlite": sqlite_tokens, "cosmos": cosmos_tokens}),
    "audit": ("store", {"sqlite": sqlite_audit, "cosmos": cosmos_audit}),
    "inbox": ("store", {"sqlite": sqlite_inbox, "cosmos": cosmos_inbox}),
    "registration_queue": ("queue", {"sqlite": sqlite_registration_queue, "storage": storage_registration_queue}),
    "submission_queue": ("queue", {"sqlite": sqlite_submission_queue, "storage": storage_submission_queue}),
    "replies": ("queue", {"sqlite": queue_replies, "storage": queue_replies}),
    "notifier": ("notifier_kind", {"none": no_notifier, "webhook": webhook}),
}


def kind_of(port: str, settings: Settings) -> str:
    """The adapter kind the settings choose for a port."""
    return str(getattr(settings, FACTORIES[port][0]))


def make(port: str, settings: Settings) -> Any:
    """The adapter the settings choose for a port."""
    setting, choices = FACTORIES[port]
    return choices[str(getattr(settings, setting))](settings)
