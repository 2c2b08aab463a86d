"""Builds for real: buildah pushing to a Distribution registry, through the HTTP API and the queue worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.adapters.oci_registry import OciRegistry
from shared.adapters.sqlite_queue import SqliteQueue
from shared.bootstrap import Services, build_services
from shared.domain.images import ImageRef
from shared.local_stack import worker_for
from shared.settings import Settings
from tests.auth import authorized
from tests.integration.test_api_contexts_jobs import member, tar_gz, upload
from tests.integration.test_api_environments import WS, assert_problem, register
from tests.stack import RunningRegistry, running_registry


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with running_registry(tmp_path_factory.mktemp("reg")) as running:
        yield running


class Stack:
    """The API over real adapters, with the queue worker running in a thread."""

    def __init__(self, services: Services, client: TestClient) -> None:
        self.services = services
        self.api = client
        self.stop = threading.Event()
        self.thread = threading.Thread(target=worker_for(services).run_forever, args=(self.stop,), daemon=True)

    def context(self, dockerfile: str, **files: bytes) -> str:
        members = [member("Dockerfile", dockerfile.encode()), *(member(n, d) for n, d in files.items())]
        response = upload(self.api, tar_gz(members))
        assert response.status_code == 201, response.text
        digest: str = response.json()["digest"]
        return digest

    def ensure(self, name: str, version: str = "1") -> Any:
        return self.api.post(f"{WS}/environments/{name}/versions/{version}/image")

    def wait(self, build_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            build: dict[str, Any] = self.api.get(f"{WS}/builds/{build_id}").json()
            if build["status"] in ("succeeded", "failed", "cancelled"):
                return build
            time.sleep(0.2)
        raise AssertionError(f"build {build_id} did not finish in {timeout}s")


def settings_for(tmp_path: Path, reg: RunningRegistry, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", registry=reg.host, insecure_registries=reg.host,
                    unqualified_registry=reg.host, queue_visibility_seconds=5, queue_backoff_seconds=0.2, **extra)


@pytest.fixture
def stack(tmp_path: Path, reg: RunningRegistry) -> Iterator[Stack]:
    services = build_services(settings_for(tmp_path, reg))
    with authorized(TestClient(create_app(services))) as client:
        running = Stack(services, client)
        running.thread.start()
        yield running
        running.stop.set()
        running.thread.join(timeout=30)


def test_build_then_cache_hit_under_another_name(stack: Stack, reg: RunningRegistry) -> None:
    digest = stack.context("FROM envhub/busybox:latest\nRUN echo built > /built\n")
    first = register(stack.api, "app", {"build": {"context": digest}})
    miss = stack.ensure("app")
    assert miss.status_code == 202 and miss.json()["cached"] is False
    build = stack.wait(miss.json()["build_id"])
    assert build["status"] == "succeeded", stack.api.get(f"{WS}/builds/{build['id']}/log").json()["lines"]
    registry = OciRegistry(insecure_registries={reg.host})
    assert build["base_digests"] == {"envhub/busybox:latest": registry.head(reg.base)}
    image = ImageRef(registry=reg.host, repository=first["image"], tag="latest")
    assert registry.head(image) == build["digest"]
    immutable = [t for t in build["tags"] if t != "latest"]
    assert len(immutable) == 1 and registry.head(image.with_tag(immutable[0])) == build["digest"]
    assert sorted(registry.tags(reg.host, first["image"])) == sorted(build["tags"])

    register(stack.api, "app-copy", {"build": {"context": digest}, "description": "same definition, new name"})
    hit = stack.ensure("app-copy")
    assert hit.status_code == 200 and hit.json() == {
        "image": str(image), "cached": True, "digest": build["digest"], "build_id": None, "status": "succeeded",
        "build": None}
    assert stack.services.images.builds.count_for_hash(first["hash"]) == 1

    details = stack.api.get(f"{WS}/environments/app-copy/versions/1/image").json()
    assert details["exists"] is True and details["digest"] == build["digest"]
    assert details["dockerfile"].startswith("FROM envhub/busybox") and details["build_status"] == "succeeded"


def test_twenty_concurrent_ensures_start_one_build(stack: Stack) -> None:
    digest = stack.context("FROM envhub/busybox:latest\nRUN sleep 1 && echo once > /once\n")
    record = register(stack.api, "busy", {"build": {"context": digest}})
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: stack.ensure("busy"), range(20)))
    assert {a.status_code for a in answers} <= {200, 202}
    build_ids = {a.json()["build_id"] for a in answers if a.status_code == 202}
    assert len(build_ids) == 1
    assert stack.services.images.builds.count_for_hash(record["hash"]) == 1
    assert stack.wait(build_ids.pop())["status"] == "succeeded"


def test_failing_dockerfile_then_fixed_version(stack: Stack) -> None:
    broken = stack.context("FROM envhub/busybox:latest\nRUN echo about to fail && exit 3\n")
    register(stack.api, "flaky", {"build": {"context": broken}})
    build = stack.wait(stack.ensure("flaky").json()["build_id"])
    assert build["status"] == "failed" and "exited with" in build["reason"] and "exit status 3" in build["reason"]
    log = stack.api.get(f"{WS}/builds/{build['id']}/log").json()
    assert log["finished"] is True and any("about to fail" in line for line in log["lines"])
    fixed = stack.context("FROM envhub/busybox:latest\nRUN echo fixed\n")
    register(stack.api, "flaky", {"build": {"context": fixed}})
    assert stack.wait(stack.ensure("flaky", "2").json()["build_id"])["status"] == "succeeded"


def test_installed_packages_are_recorded(stack: Stack) -> None:
    # A stand-in python3 answers `-m pip freeze --all` as pip would: the mechanism, not pip, is under test.
    fake_python = b"#!/bin/sh\n[ \"$2 $3\" = \"pip freeze\" ] && printf 'numpy==1.26.4\\nrequests==2.32.3\\n'\n"
    digest = stack.context("FROM envhub/busybox:latest\nCOPY python3 /usr/bin/python3\nRUN chmod +x /usr/bin/python3\n",
                           python3=fake_python)
    register(stack.api, "with-python", {"build": {"context": digest}})
    build = stack.wait(stack.ensure("with-python").json()["build_id"])
    assert build["status"] == "succeeded" and build["packages"] == ["numpy==1.26.4", "requests==2.32.3"]


def test_running_build_can_be_cancelled(stack: Stack) -> None:
    slow = stack.context("FROM envhub/busybox:latest\nRUN sleep 60\n")
    register(stack.api, "slow", {"build": {"context": slow}})
    build_id = stack.ensure("slow").json()["build_id"]
    deadline = time.monotonic() + 30
    while stack.api.get(f"{WS}/builds/{build_id}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    stack.api.post(f"{WS}/builds/{build_id}/cancel")
    started = time.monotonic()
    assert stack.wait(build_id, timeout=30)["status"] == "cancelled"
    assert time.monotonic() - started < 15


def test_system_managed_plan_and_user_image(stack: Stack, reg: RunningRegistry) -> None:
    conda = {"channels": ["conda-forge"], "dependencies": ["python=3.11"]}
    register(stack.api, "conda-env", {"image": str(reg.base), "conda_file": conda})
    details = stack.api.get(f"{WS}/environments/conda-env/versions/1/image").json()
    assert details["exists"] is False and details["build_status"] is None
    assert f"FROM {reg.base}" in details["dockerfile"] and "conda env create -p /azureml-envs/azureml_" in \
        details["dockerfile"]
    register(stack.api, "mine", {"image": str(reg.base)})
    mine = stack.ensure("mine")
    assert mine.status_code == 200 and mine.json()["digest"].startswith("sha256:")
    register(stack.api, "gone", {"image": f"{reg.host}/nobody/nothing:1"})
    assert_problem(stack.ensure("gone"), 404, "does not exist")


def test_registry_down_is_503_and_queues_nothing(tmp_path: Path) -> None:
    from tests.stack import free_port

    host = f"127.0.0.1:{free_port()}"
    settings = Settings(data_dir=tmp_path / "data", registry=host, insecure_registries=host)
    services = build_services(settings)
    with authorized(TestClient(create_app(services))) as api:
        register(api, "e", {"image": "python:3.11", "conda_file": {"dependencies": ["python=3.11"]}})
        response = api.post(f"{WS}/environments/e/versions/1/image")
        body = assert_problem(response, 503, host)
        assert int(response.headers["Retry-After"]) > 0 and body["type"].endswith("registry-unavailable")
    queue = services.ports["queue"].adapter
    assert isinstance(queue, SqliteQueue) and queue.depth() == 0


def test_a_build_past_its_timeout_is_stopped_and_failed(tmp_path: Path, reg: RunningRegistry) -> None:
    services = build_services(settings_for(tmp_path, reg, build_timeout_seconds=3))
    with authorized(TestClient(create_app(services))) as client:
        stack = Stack(services, client)
        stack.thread.start()
        try:
            endless = stack.context("FROM envhub/busybox:latest\nRUN sleep 60\n")
            register(client, "endless", {"build": {"context": endless}})
            started = time.monotonic()
            build = stack.wait(stack.ensure("endless").json()["build_id"], timeout=60)
            assert build["status"] == "failed" and "longer than 3 s" in build["reason"]
            assert time.monotonic() - started < 30
        finally:
            stack.stop.set()
            stack.thread.join(timeout=30)
