"""The build state machine over a scripted builder and the real SQLite queue: dispatch, checks, lost runs,
builders that never come back, cancels, duplicate and lost messages."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from shared.bootstrap import Services, build_services
from shared.domain.builds import BuildRecord, BuildRequest
from shared.domain.images import ImageRef
from shared.local_stack import worker_for
from shared.services.worker import QueueWorker
from shared.settings import Settings
from tests.fakes.builder import DIGEST, FakeBuilder

CONDA = {"dependencies": ["python=3.11"]}


class Registry:
    """Answers for the base image, and for the built image once something pushed it."""

    def __init__(self) -> None:
        self.images: dict[str, str] = {"docker.io/library/python:3.11": "sha256:" + "b" * 64}

    def check(self) -> None: ...

    def head(self, ref: ImageRef) -> str | None:
        return self.images.get(str(ref))

    def tags(self, registry: str, repository: str) -> list[str]:
        return []


def wire(tmp_path: Path, **builder: Any) -> tuple[Services, QueueWorker, FakeBuilder]:
    registry = Registry()
    fake = FakeBuilder(registry.images, **builder)
    settings = Settings(data_dir=tmp_path / "data", registry="reg:5000", queue_max_attempts=3,
                        queue_backoff_seconds=0.01, queue_visibility_seconds=5, build_check_seconds=0.01,
                        build_check_max_seconds=0.02, build_compute={"w": "dedicated-pool"})
    services = build_services(settings, registry=registry, builder=fake)
    services.environments.register(workspace="w", name="e", document={"image": "python:3.11", "conda_file": CONDA})
    return services, worker_for(services), fake


def drain(services: Services, worker: QueueWorker, build_id: str) -> BuildRecord:
    for _ in range(500):
        build = services.images.builds.get(build_id)
        assert build is not None
        if build.status.finished and not services.ports["queue"].adapter.depth():
            return build
        worker.run_once()
        time.sleep(0.005)
    raise AssertionError("the build did not finish")


def ensure(services: Services) -> BuildRecord:
    build = services.images.ensure(workspace="w", name="e", version="1").build
    assert build is not None
    return build


def test_a_build_is_dispatched_then_checked_to_its_end(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path)
    done = drain(services, worker, ensure(services).id)
    assert done.status == "succeeded" and done.digest == DIGEST and done.attempts == 1 and done.checks == 2
    assert done.base_digests == {"python:3.11": "sha256:" + "b" * 64} and done.packages == ["python==3.11.9"]
    assert done.tags[0] == "latest" and len(done.tags) == 2
    (run,) = fake.runs.values()
    assert run.agent_pool == "dedicated-pool" and run.platform == "linux"
    # the plan stored on the record is what the builder got; a generated context holds the conda file
    assert done.plan is not None and run.plan == done.plan and "conda env create" in done.plan.dockerfile
    assert run.context.read_text("azureml-environment-setup/conda_dependencies.yaml") is not None
    assert run.context.read_text("Dockerfile") == done.plan.dockerfile
    log = services.images.builds.read_log(done.id, 0)
    assert [line for line in log if line.startswith("step")] == ["step 1", "step 2"]
    assert services.images.ensure(workspace="w", name="e", version="1").digest == DIGEST


def test_a_builder_that_fails_to_start_is_retried_by_the_queue(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path, start_failures=1)
    done = drain(services, worker, ensure(services).id)
    assert done.status == "succeeded" and fake.starts == 2 and done.attempts == 1
    assert services.images.builds.count_for_hash(done.hash) == 1


def test_a_lost_run_is_started_again_and_the_same_build_succeeds(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path, lost_runs=1)
    done = drain(services, worker, ensure(services).id)
    assert done.status == "succeeded" and done.attempts == 2 and fake.starts == 2
    assert any("attempt 1 was interrupted (the worker was killed); starting attempt 2" in line
               for line in services.images.builds.read_log(done.id, 0))


def test_runs_lost_again_and_again_fail_the_build_with_the_reason(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path, lost_runs=99)
    done = drain(services, worker, ensure(services).id)
    assert done.status == "failed" and fake.starts == 3
    assert done.reason == "gave up after 3 attempts: the worker was killed"


def test_a_builder_that_never_comes_back_fails_the_build_with_the_reason(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path, start_failures=99)
    build = ensure(services)
    done = drain(services, worker, build.id)
    assert done.status == "failed" and fake.starts == 3
    assert done.reason is not None and "gave up after 3 attempts" in done.reason and "signal 9" in done.reason
    assert len(services.ports["queue"].adapter.poisoned()) == 1
    # the hash is free again: a new request starts a new build instead of joining the failed one
    assert ensure(services).id != build.id


def test_a_failed_run_is_final(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path, fail_with="RUN exit 3: exit status 3")
    done = drain(services, worker, ensure(services).id)
    assert done.status == "failed" and done.reason == "RUN exit 3: exit status 3" and fake.starts == 1


def test_cancel_of_a_running_build_stops_its_run(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path, polls_to_finish=1000)
    build = ensure(services)
    worker.run_once()  # dispatch
    running = services.images.builds.get(build.id)
    assert running is not None and running.status == "running" and running.run_id is not None
    services.images.cancel("w", build.id)
    done = drain(services, worker, build.id)
    assert done.status == "cancelled" and fake.runs[running.run_id].cancelled


def test_cancel_before_dispatch_is_immediate(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path)
    build = ensure(services)
    assert services.images.cancel("w", build.id).status == "cancelled"
    drain(services, worker, build.id)
    assert fake.starts == 0


def test_a_duplicated_check_moves_the_build_on_once(tmp_path: Path) -> None:
    services, worker, fake = wire(tmp_path, polls_to_finish=3)
    build = ensure(services)
    worker.run_once()  # dispatch: the first check is queued
    running = services.images.builds.get(build.id)
    assert running is not None
    duplicate = BuildRequest(type="check", build_id=build.id, workspace="w", hash=build.hash, check=running.checks)
    services.ports["queue"].adapter.send(duplicate.model_dump_json())
    done = drain(services, worker, build.id)
    assert done.status == "succeeded" and fake.runs[done.run_id or ""].polls == 3
    assert [line for line in services.images.builds.read_log(done.id, 0) if line.startswith("step")] == \
        ["step 1", "step 2", "step 3"]


def test_a_lost_check_is_recovered_by_the_sweep(tmp_path: Path) -> None:
    services, worker, _ = wire(tmp_path)
    build = ensure(services)
    worker.run_once()  # dispatch; now lose the check message
    queue = services.ports["queue"].adapter
    time.sleep(0.05)  # the check is sent with a delay of 0.01 s
    message = queue.receive(visibility_timeout=60)
    assert message is not None and BuildRequest.model_validate_json(message.body).type == "check"
    queue.delete(message)
    assert services.building.recover() == 0  # not stale yet
    services.building.policy = dataclasses.replace(services.building.policy, stale_after=0.0)
    assert services.building.recover() == 1
    assert drain(services, worker, build.id).status == "succeeded"
