"""The local home around the HTTP app: emulators, the registry process, a seeded base image, the queue
consumer and the recovery sweep. `envhub serve` runs it; in Azure none of it exists (the platform does it)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.bootstrap import Services
from shared.domain.errors import EnvhubError
from shared.domain.images import ImageRef
from shared.domain.schedule import parse_schedule
from shared.services.scheduler import Scheduler
from shared.services.worker import QueueWorker, WorkerPolicy
from shared.settings import Settings

log = logging.getLogger(__name__)
GC_INTERVAL = 3600.0  # seconds between garbage collections of build contexts
EMULATORS_FILE = "emulators.json"  # under the data folder while `envhub serve --emulators` runs


@contextmanager
def emulated(settings: Settings, *, tls_host: str | None = None) -> Iterator[Settings]:
    """Start Azurite (its data under the data folder) and the Cosmos DB server (in memory: a restart empties it)
    as children, and return settings that point the store, contexts and queue at them; builds still use
    buildah and the local registry. With `tls_host` (serving https), also the HTTPS proxy that takes Azure ML's
    SDK uploads to Azurite, its certificates from the CA `envhub serve --tls` keeps."""
    from shared.adapters.azurite import Azurite
    from shared.adapters.cosmos_emulator import CosmosEmulator

    with ExitStack() as stack:
        azurite = stack.enter_context(Azurite(data_dir=settings.data_dir / "azurite"))
        cosmos = stack.enter_context(CosmosEmulator())
        log.info("emulators: Azurite (blob %s, queue %s), Cosmos DB %s", azurite.blob_endpoint,
                 azurite.queue_endpoint, cosmos.endpoint)
        known = {"storage_connection_string": azurite.connection_string, "cosmos_endpoint": cosmos.endpoint}
        if tls_host is not None:
            known |= _upload_proxy(stack, settings, tls_host, azurite.blob_endpoint)
        # Their ports are free ones: other processes on this machine (`envhub queue`) find them in this file.
        found = settings.data_dir / EMULATORS_FILE
        _write_private(found, known)
        stack.callback(found.unlink, missing_ok=True)
        yield settings.model_copy(update={
            "store": "cosmos", "cosmos_endpoint": cosmos.endpoint, "cosmos_key": cosmos.key, "cosmos_create": True,
            "contexts": "blob", "queue": "storage", "storage_connection_string": azurite.connection_string,
            "storage_create": True})


def _upload_proxy(stack: ExitStack, settings: Settings, tls_host: str, blob_endpoint: str) -> dict[str, str]:
    """Start the SDK uploads' HTTPS proxy in front of Azurite's blob service; what a client needs to use it."""
    from shared.adapters import local_tls
    from shared.adapters.blob_proxy import BlobProxy

    files = local_tls.ensure(settings.data_dir, tls_host)
    upstream = urlsplit(blob_endpoint)
    proxy = stack.enter_context(BlobProxy((upstream.hostname or "127.0.0.1", upstream.port or 80), files.ca,
                                          files.ca.with_name("ca-key.pem"), suffix=settings.local_storage_suffix,
                                          port=settings.blob_proxy_port))
    log.info("Azure ML's SDK uploads: HTTPS_PROXY=%s, cloud_metadata storage_endpoint %s", proxy.url,
             settings.local_storage_suffix)
    return {"blob_proxy": proxy.url, "storage_endpoint": settings.local_storage_suffix}


def _write_private(path: Path, content: dict[str, str]) -> None:
    """Write JSON readable by this user only (mode 0600), replacing the file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        json.dump(content, file)
    os.replace(partial, path)


@contextmanager
def local_stack(services: Services) -> Iterator[None]:
    """Start what a developer's machine needs, and stop it again on the way out."""
    settings = services.settings
    stop = threading.Event()
    threads: list[threading.Thread] = []
    registry: Any = None
    supervisor: threading.Thread | None = None
    try:
        if settings.local_registry:
            from shared.adapters.local_registry import LocalRegistry

            registry = LocalRegistry(settings.data_dir / "registry", settings.registry_port)
            registry.start()
            log.info("local registry on %s", registry.host)
            # Restarts the registry when it dies or stops answering; the children it starts end with it.
            supervisor = threading.Thread(target=registry.supervise, args=(stop,), name="registry-supervisor",
                                          daemon=True)
            supervisor.start()
            seed(services)
        if settings.worker:
            for name in services.consumers:
                threads.append(threading.Thread(target=worker_for(services, name).run_forever, args=(stop,),
                                                name=f"{name}-worker", daemon=True))
            threads.append(threading.Thread(target=_sweep, args=(services, stop), name="build-recovery",
                                            daemon=True))
            threads.append(threading.Thread(target=scheduler_for(services, wait=stop.wait).run, args=(stop,),
                                            name="patch-scan", daemon=True))
        for thread in threads:
            thread.start()
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if registry is not None:
            registry.stop()  # before the supervisor ends: it restarts nothing once the registry is stopping
        if supervisor is not None:
            supervisor.join(timeout=30)


def scheduler_for(services: Services, *, wait: Callable[[float], bool],
                  clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Scheduler:
    """The patch scan on PATCH_SCAN_SCHEDULE, as the Functions timer runs it in Azure; `wait(seconds)` returns
    True when the server stops."""
    def job(fire: datetime) -> None:
        services.scanning.start("scheduler")

    return Scheduler(parse_schedule(services.settings.patch_scan_schedule), job, clock=clock, wait=wait)


def _sweep(services: Services, stop: threading.Event) -> None:
    """The timers Azure runs, played here: the recovery sweeps (builds whose messages were lost move on; replies
    owed for ended builds are sent), and hourly the garbage collection of build-context blobs no manifest names."""
    interval = max(1.0, services.settings.build_stale_seconds / 2)
    next_gc = time.monotonic()
    while not stop.wait(interval):
        try:
            services.building.recover()
            services.intake.recover()
            if time.monotonic() >= next_gc:
                next_gc = time.monotonic() + GC_INTERVAL
                removed = services.contexts.collect_garbage(timedelta(hours=services.settings.context_gc_hours))
                if removed:
                    log.info("removed %d build-context blobs no manifest names", removed)
        except Exception:  # a sweep that fails is tried again at the next interval
            log.exception("build recovery sweep failed")


def seed(services: Services) -> None:
    """Put envhub/busybox:latest in the local registry, made from the host's static busybox, so that a
    first build works with no network."""
    from shared.adapters.buildah_cli import Buildah
    from shared.adapters.seed_image import SEED_REPOSITORY, seed_busybox

    settings = services.settings
    target = ImageRef(registry=settings.registry_host, repository=SEED_REPOSITORY, tag="latest")
    if services.registry.head(target) is not None:
        return
    if not Buildah.available():
        log.warning("buildah is not installed; %s is not seeded", target)
        return
    buildah = Buildah(settings.data_dir / "buildah", insecure_registries=settings.insecure,
                      unqualified_registry=settings.default_registry, allowed=settings.allowed)
    try:
        digest = seed_busybox(buildah, target)
        log.info("seeded %s (%s)", target, digest)
    except EnvhubError as error:
        log.warning("could not seed %s: %s", target, error)


def worker_for(services: Services, queue: str = "build") -> QueueWorker:
    """The local consumer of a queue (`build` or `scan`): the Functions host's role, played in this process."""
    consumer = services.consumers.get(queue)
    if consumer is None:
        raise RuntimeError(f"the {queue} queue adapter cannot be consumed from here")
    settings = services.settings
    return QueueWorker(consumer.queue, consumer.handle, consumer.give_up,
                       WorkerPolicy(visibility_timeout=settings.queue_visibility_seconds,
                                    max_attempts=settings.queue_max_attempts,
                                    backoff_base=settings.queue_backoff_seconds))
