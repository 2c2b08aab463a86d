"""Builder faults lose nothing: a crashed or unreachable builder is retried, and gives up with a reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from shared.adapters.sqlite_queue import SqliteQueue
from shared.bootstrap import Services, build_services
from shared.domain.builds import BuiltImage
from shared.domain.errors import BuilderUnavailable
from shared.domain.images import ImageRef
from shared.services.building import BuildService
from shared.services.images import ImageService
from shared.services.worker import QueueWorker, WorkerPolicy
from shared.settings import Settings

CONDA = {"dependencies": ["python=3.11"]}


class Registry:
    """Answers for the base image, and for the built image once something pushed it."""

    def __init__(self) -> None:
        self.images: dict[str, str] = {"docker.io/library/python:3.11": "sha256:" + "b" * 64}

    def head(self, ref: ImageRef) -> str | None:
        return self.images.get(str(ref))

    def tags(self, registry: str, repository: str) -> list[str]:
        return []


class Builder:
    """Crashes `crashes` times, then pushes."""

    name = "fake"

    def __init__(self, registry: Registry, crashes: int) -> None:
        self.registry = registry
        self.crashes = crashes
        self.calls = 0

    def build(self, *, context: Path, dockerfile: str, targets: list[ImageRef], log: Callable[[str], None],
              timeout: float, cancelled: Callable[[], bool]) -> BuiltImage:
        self.calls += 1
        assert (context / dockerfile).is_file() and "conda env create" in (context / dockerfile).read_text()
        if self.calls <= self.crashes:
            raise BuilderUnavailable("buildah was killed by signal 9", where="buildah")
        for target in targets:
            self.registry.images[str(target)] = "sha256:" + "c" * 64
        return BuiltImage(digest="sha256:" + "c" * 64, packages=["python==3.11.9"])


def wire(tmp_path: Path, crashes: int) -> tuple[Services, ImageService, BuildService, QueueWorker, Builder]:
    services = build_services(Settings(data_dir=tmp_path / "data", registry="reg:5000"))
    registry = Registry()
    builder = Builder(registry, crashes)
    images = ImageService(environments=services.environments, contexts=services.contexts,
                          builds=services.images.builds, queue=services.queue, registry=registry,
                          registry_host="reg:5000", default_registry="docker.io")
    building = BuildService(builds=services.images.builds, environments=services.environments,
                            contexts=services.contexts, registry=registry, builder=builder, registry_host="reg:5000",
                            default_registry="docker.io", work_dir=tmp_path / "work", timeout=60)
    worker = QueueWorker(services.queue, building.handle_message, building.give_up,
                         WorkerPolicy(visibility_timeout=5, max_attempts=3, backoff_base=0.01))
    services.environments.register(workspace="w", name="e", document={"image": "python:3.11", "conda_file": CONDA})
    return services, images, building, worker, builder


def drain(worker: QueueWorker, queue: SqliteQueue) -> None:
    for _ in range(200):
        if not queue.depth():
            return
        worker.run_once()
        time.sleep(0.02)


def test_a_crashed_builder_is_retried_and_the_same_build_succeeds(tmp_path: Path) -> None:
    services, images, _, worker, builder = wire(tmp_path, crashes=1)
    build = images.ensure(workspace="w", name="e", version="1").build
    assert build is not None and isinstance(services.queue, SqliteQueue)
    drain(worker, services.queue)
    done = services.images.builds.get(build.id)
    assert done is not None and done.status == "succeeded" and done.attempts == 2 and builder.calls == 2
    assert done.base_digests == {"python:3.11": "sha256:" + "b" * 64} and done.packages == ["python==3.11.9"]
    assert services.images.builds.count_for_hash(build.hash) == 1
    assert images.ensure(workspace="w", name="e", version="1").digest == "sha256:" + "c" * 64


def test_a_builder_that_never_comes_back_fails_the_build_with_the_reason(tmp_path: Path) -> None:
    services, images, _, worker, builder = wire(tmp_path, crashes=99)
    build = images.ensure(workspace="w", name="e", version="1").build
    assert build is not None and isinstance(services.queue, SqliteQueue)
    drain(worker, services.queue)
    done = services.images.builds.get(build.id)
    assert done is not None and done.status == "failed" and builder.calls == 3
    assert done.reason is not None and "gave up after 3 attempts" in done.reason and "signal 9" in done.reason
    assert len(services.queue.poisoned()) == 1
    # the hash is free again: a new request starts a new build instead of joining the failed one
    again = images.ensure(workspace="w", name="e", version="1").build
    assert again is not None and again.id != build.id
