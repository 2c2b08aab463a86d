"""The local home: the registry process, a seeded base image and the queue worker around the HTTP app."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from shared.adapters.buildah import BuildahBuilder
from shared.adapters.local_registry import LocalRegistry
from shared.bootstrap import Services
from shared.domain.errors import EnvhubError
from shared.domain.images import ImageRef

log = logging.getLogger(__name__)
SEED_REPOSITORY = "envhub/busybox"


@contextmanager
def local_stack(services: Services) -> Iterator[None]:
    """Start what a developer's machine needs, and stop it again on the way out."""
    settings = services.settings
    registry = LocalRegistry(settings.data_dir / "registry", settings.registry_port) if settings.local_registry \
        else None
    stop = threading.Event()
    worker: threading.Thread | None = None
    try:
        if registry is not None:
            registry.start()
            log.info("local registry on %s", registry.host)
            seed(services)
        if settings.worker:
            worker = threading.Thread(target=services.worker.run_forever, args=(stop,), name="build-worker",
                                      daemon=True)
            worker.start()
        yield
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=10)
        if registry is not None:
            registry.stop()


def seed(services: Services) -> None:
    """Put envhub/busybox:latest in the local registry, made from the host's static busybox, so that a
    first build works with no network."""
    target = ImageRef(registry=services.settings.registry_host, repository=SEED_REPOSITORY, tag="latest")
    if services.registry.head(target) is not None:
        return
    builder = services.building.builder
    if not isinstance(builder, BuildahBuilder):
        return
    try:
        digest = builder.seed_busybox(target)
        log.info("seeded %s (%s)", target, digest)
    except EnvhubError as error:
        log.warning("could not seed %s: %s", target, error)
