"""The ensure-image rules with a fake registry and queue over a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.bootstrap import build_services
from shared.domain.errors import QueueUnavailable, RegistryUnavailable
from shared.domain.images import ImageRef
from shared.services.images import ImageService
from shared.settings import Settings

CONDA = {"channels": ["conda-forge", "defaults"], "dependencies": ["python=3.11", {"pip": ["b", "a"]}]}


class FakeRegistry:
    def __init__(self) -> None:
        self.images: dict[str, str] = {}
        self.down = False

    def head(self, ref: ImageRef) -> str | None:
        if self.down:
            raise RegistryUnavailable("down", where=str(ref))
        return self.images.get(str(ref))

    def tags(self, registry: str, repository: str) -> list[str]:
        return []

    def check(self) -> None: ...


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def check(self) -> None: ...

    def send(self, body: str, *, delay: float = 0.0) -> None:
        self.sent.append(body)


def wire(tmp_path: Path, registry: FakeRegistry, queue: FakeQueue) -> ImageService:
    settings = Settings(data_dir=tmp_path / "data", registry="reg:5000")
    services = build_services(settings, registry=registry, queue=queue)
    services.environments.register(workspace="w", name="e", document={"image": "python:3.11", "conda_file": CONDA})
    return services.images


@pytest.fixture
def images(tmp_path: Path) -> tuple[ImageService, FakeRegistry, FakeQueue]:
    registry, queue = FakeRegistry(), FakeQueue()
    return wire(tmp_path, registry, queue), registry, queue


def test_miss_queues_one_build_and_later_calls_join(images: tuple[ImageService, FakeRegistry, FakeQueue]) -> None:
    service, _, queue = images
    first = service.ensure(workspace="w", name="e", version="1")
    second = service.ensure(workspace="w", name="e", version="latest")
    assert first.created and not second.created and first.build and second.build
    assert first.build.id == second.build.id and len(queue.sent) == 1
    assert first.image.startswith("reg:5000/azureml/azureml_")


def test_hit_queues_nothing(images: tuple[ImageService, FakeRegistry, FakeQueue]) -> None:
    service, registry, queue = images
    record = service.environments.get(workspace="w", name="e", version="1")
    registry.images[str(service.target(record))] = "sha256:" + "1" * 64
    hit = service.ensure(workspace="w", name="e", version="1")
    assert hit.digest == "sha256:" + "1" * 64 and hit.build is None and queue.sent == []


def test_outage_is_an_error_not_a_miss(images: tuple[ImageService, FakeRegistry, FakeQueue]) -> None:
    service, registry, queue = images
    registry.down = True
    with pytest.raises(RegistryUnavailable):
        service.ensure(workspace="w", name="e", version="1")
    assert queue.sent == [] and service.builds.latest_for_hash(
        service.environments.get(workspace="w", name="e", version="1").description.hash) is None


class BrokenQueue(FakeQueue):
    def send(self, body: str, *, delay: float = 0.0) -> None:
        raise OSError("disk full")


def test_a_build_the_queue_refused_does_not_hold_the_hash(tmp_path: Path) -> None:
    registry = FakeRegistry()
    broken = wire(tmp_path, registry, BrokenQueue())
    with pytest.raises(QueueUnavailable, match="disk full"):
        broken.ensure(workspace="w", name="e", version="1")
    queue = FakeQueue()
    working = build_services(Settings(data_dir=tmp_path / "data", registry="reg:5000"), registry=registry,
                             queue=queue).images
    retried = working.ensure(workspace="w", name="e", version="1")
    assert retried.created and len(queue.sent) == 1
