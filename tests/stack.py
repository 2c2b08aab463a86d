"""Real local parts for integration tests: a Distribution registry on a free port, buildah, a seeded base."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.adapters.buildah_cli import Buildah
from shared.adapters.local_registry import LocalRegistry
from shared.adapters.seed_image import BUSYBOX, seed_busybox
from shared.domain.images import ImageRef
from tests.support import free_port as free_port  # re-exported: tests import it from here too
from tests.support import unavailable


def require_build_tools() -> None:
    """buildah, docker-registry and a static busybox, or skip (fail in CI)."""
    missing = [tool for tool in ("buildah", "docker-registry") if shutil.which(tool) is None]
    if not BUSYBOX.is_file():
        missing.append("busybox-static")
    if missing:
        unavailable(f"{', '.join(missing)} not installed (`make test` installs them with apt)")


@dataclass(frozen=True)
class RunningRegistry:
    """A registry process and the base image pushed into it."""

    registry: LocalRegistry
    base: ImageRef

    @property
    def host(self) -> str:
        return self.registry.host


@contextmanager
def running_registry(folder: Path) -> Iterator[RunningRegistry]:
    """Start a registry under `folder` and seed envhub/busybox:latest into it with buildah."""
    require_build_tools()
    registry = LocalRegistry(folder / "registry", free_port())
    registry.start()
    try:
        base = ImageRef(registry=registry.host, repository="envhub/busybox", tag="latest")
        seed_busybox(Buildah(folder / "seed-buildah", insecure_registries=frozenset({registry.host})), base)
        yield RunningRegistry(registry, base)
    finally:
        registry.stop()
