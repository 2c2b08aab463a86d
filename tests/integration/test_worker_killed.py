"""A worker killed in the middle of a build: the message comes back and the same build record succeeds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.bootstrap import build_services
from shared.settings import Settings
from tests.emulators import azure_env, azurite_or_skip, cosmos_or_skip
from tests.integration.test_api_contexts_jobs import member, tar_gz
from tests.stack import RunningRegistry, free_port, running_registry
from tests.support import REPO, SERVER_TOKENS, authed


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with running_registry(tmp_path_factory.mktemp("reg")) as running:
        yield running


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (buildah runs in a session of its own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.integration)])
def home(request: pytest.FixtureRequest, reg: RunningRegistry) -> Iterator[dict[str, str]]:
    """The settings of a home: SQLite, or Cosmos DB and Azure Storage on emulators that outlive the server (as
    Azure's services outlive a function instance)."""
    base = {"ENVHUB_REGISTRY": reg.host, "ENVHUB_INSECURE_REGISTRIES": reg.host,
            "ENVHUB_UNQUALIFIED_REGISTRY": reg.host, "ENVHUB_QUEUE_VISIBILITY_SECONDS": "3"}
    if request.param == "local":
        yield base
        return
    with ExitStack() as stack:
        yield base | azure_env(azurite_or_skip(stack), cosmos_or_skip(stack), f"killed-{uuid.uuid4().hex[:8]}")


def serve(data: Path, home: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **home}
    log = (data.parent / f"serve-{port}.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--data-dir",
                                str(data)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health/live", timeout=1).status_code == 200:
                SERVER_TOKENS[f"http://127.0.0.1:{port}"] = (data / "admin-token").read_text().strip()
                return process
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "envhub serve did not start"
        time.sleep(0.1)


def build_of(url: str, build_id: str) -> dict[str, Any]:
    result: dict[str, Any] = authed.get(f"{url}/api/workspaces/w/builds/{build_id}").json()
    return result


def test_killed_worker_build_is_redelivered_and_succeeds_once(tmp_path: Path, home: dict[str, str]) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = serve(data, home, port)
    try:
        # A definition of its own (each home shares the registry, where a same-hash image would be a hit).
        dockerfile = f"FROM envhub/busybox:latest\nRUN sleep 4 && echo {uuid.uuid4().hex} > /done\n"
        archive = tar_gz([member("Dockerfile", dockerfile.encode())])
        digest = authed.post(f"{url}/api/workspaces/w/contexts", content=archive,
                            headers={"content-type": "application/gzip"}).json()["digest"]
        record = authed.post(f"{url}/api/workspaces/w/environments/slow/versions",
                            json={"build": {"context": digest}}).json()
        build_id = authed.post(f"{url}/api/workspaces/w/environments/slow/versions/1/image").json()["build_id"]
        deadline = time.monotonic() + 60
        while build_of(url, build_id)["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)  # well inside the RUN sleep
    finally:
        for pid in [first.pid, *descendants(first.pid)]:
            with contextlib.suppress(ProcessLookupError):  # it may have ended with its parent
                os.kill(pid, signal.SIGKILL)
        first.wait()

    second = serve(data, home, port)
    try:
        deadline = time.monotonic() + 90
        while (build := build_of(url, build_id))["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, build
            time.sleep(0.3)
        assert build["status"] == "succeeded" and build["attempts"] == 2
        log = authed.get(f"{url}/api/workspaces/w/builds/{build_id}/log").json()["lines"]
        assert any("attempt 2" in line for line in log)
        hit = authed.post(f"{url}/api/workspaces/w/environments/slow/versions/1/image").json()
        assert hit["cached"] is True and hit["digest"] == build["digest"]
        # Read back through the same adapters, in this process: one build of the hash, nothing left queued.
        with pytest.MonkeyPatch.context() as env:
            for key, value in home.items():
                env.setenv(key, value)
            services = build_services(Settings(data_dir=data, worker=False))
        assert services.images.builds.count_for_hash(record["hash"]) == 1
        queue = services.ports["queue"].adapter
        deadline = time.monotonic() + 30
        while queue.depth():  # the last check's message is deleted just after the build is recorded
            assert time.monotonic() < deadline, f"{queue.depth()} messages left"
            time.sleep(0.2)
    finally:
        second.terminate()
        second.wait(timeout=20)
