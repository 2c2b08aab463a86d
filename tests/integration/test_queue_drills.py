"""Queue drills on the real SQLite queue: duplicates, unreadable messages, a restart with builds queued."""

from __future__ import annotations

import time
from pathlib import Path

from shared.bootstrap import Services, build_services
from shared.domain.builds import BuildRecord, BuildRequest
from shared.local_stack import worker_for
from shared.settings import Settings
from tests.fakes.builder import FakeBuilder
from tests.integration.test_build_faults import CONDA, Registry, drain, ensure


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", registry="reg:5000", queue_max_attempts=3,
                    queue_backoff_seconds=0.01, queue_visibility_seconds=5, build_check_seconds=0.01,
                    build_check_max_seconds=0.02, worker=False)


def services_over(tmp_path: Path, registry: Registry, builder: FakeBuilder) -> Services:
    """The services of one process over the data folder (a second call is the process started again)."""
    return build_services(settings(tmp_path), registry=registry, builder=builder)


def ensure_of(services: Services, name: str) -> BuildRecord:
    build = services.images.ensure(workspace="w", name=name, version="1").build
    assert build is not None
    return build


def test_a_build_message_delivered_twice_starts_one_run(tmp_path: Path) -> None:
    registry = Registry()
    fake = FakeBuilder(registry.images, polls_to_finish=3)
    services = services_over(tmp_path, registry, fake)
    services.environments.register(workspace="w", name="e", document={"image": "python:3.11", "conda_file": CONDA})
    worker = worker_for(services)
    build = ensure(services)
    queue = services.ports["queue"].adapter
    again = BuildRequest(type="build", build_id=build.id, workspace="w", hash=build.hash, check=0).model_dump_json()
    queue.send(again)  # delivered twice before the first is handled
    worker.run_once()
    queue.send(again)  # and again while the build runs
    done = drain(services, worker, build.id)
    assert done.status == "succeeded" and done.attempts == 1 and fake.starts == 1 and len(fake.runs) == 1
    queue.send(again)  # and once more after it finished
    assert drain(services, worker, build.id) == done and fake.starts == 1
    assert services.images.builds.count_for_hash(build.hash) == 1 and queue.depth() == 0


def test_messages_no_one_can_read_are_poisoned_and_the_builds_go_on(tmp_path: Path) -> None:
    registry = Registry()
    fake = FakeBuilder(registry.images)
    services = services_over(tmp_path, registry, fake)
    services.environments.register(workspace="w", name="e", document={"image": "python:3.11", "conda_file": CONDA})
    worker = worker_for(services)
    queue = services.ports["queue"].adapter
    garbage = ["not json", '{"type": "build"}', '{"type": "build", "build_id": "nope", "workspace": "w", '
               '"hash": "' + "0" * 64 + '", "check": 0}']
    for body in garbage:
        queue.send(body)
    build = ensure(services)
    done = drain(services, worker, build.id)
    assert done.status == "succeeded" and fake.starts == 1
    poisoned = [body for body, _ in queue.poisoned()]
    assert sorted(poisoned) == sorted(garbage[:2]), poisoned  # a build no one knows is simply done with
    assert queue.depth() == 0


def test_builds_queued_at_a_restart_run_once_each(tmp_path: Path) -> None:
    registry = Registry()
    registry.images["docker.io/library/python:3.12"] = "sha256:" + "d" * 64
    external = FakeBuilder(registry.images, polls_to_finish=4)  # a builder that outlives the process (ACR Tasks)
    first = services_over(tmp_path, registry, external)
    for name, python in (("running", "3.11"), ("waiting", "3.12")):
        first.environments.register(workspace="w", name=name,
                                    document={"image": f"python:{python}", "conda_file": CONDA})
    running, waiting = ensure_of(first, "running"), ensure_of(first, "waiting")
    worker_for(first).run_once()  # `running` is dispatched; `waiting` is still queued when the process stops
    assert external.starts == 1
    del first

    second = services_over(tmp_path, registry, external)  # the process starts again on the same data
    worker = worker_for(second)
    for build in (running, waiting):
        done = drain(second, worker, build.id)
        assert done.status == "succeeded" and done.attempts == 1, done
        assert second.images.builds.count_for_hash(build.hash) == 1
    assert external.starts == 2 and len(external.runs) == 2  # `running` kept its run; `waiting` got one
    assert second.ports["queue"].adapter.depth() == 0
    hit = second.images.ensure(workspace="w", name="running", version="1")
    assert hit.build is None and hit.digest is not None  # built once, then a cache hit


def test_a_scan_message_no_one_can_read_is_poisoned(tmp_path: Path) -> None:
    registry = Registry()
    services = services_over(tmp_path, registry, FakeBuilder(registry.images))
    worker = worker_for(services, "scan")
    queue = services.ports["scan_queue"].adapter
    queue.send("not a scan request")
    for _ in range(100):
        worker.run_once()
        if not queue.depth():
            break
        time.sleep(0.01)  # the backoff between attempts
    assert queue.depth() == 0 and [body for body, _ in queue.poisoned()] == ["not a scan request"]
