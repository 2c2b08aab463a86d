"""Faults that heal: a killed or stopped local registry is restarted, a stalled registry holds up nothing else
(its lookups end at a deadline and its circuit opens), two serves never share a registry, and a builder that
starts clears what a killed one left behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn

from functions.http_api import create_app
from shared.adapters.buildah import BuildahBuilder
from shared.adapters.buildah_cli import Buildah
from shared.adapters.local_registry import LocalRegistry
from shared.bootstrap import build_services
from shared.domain.errors import RegistryUnavailable
from shared.settings import Settings
from tests.auth import admin_token
from tests.support import SERVER_TOKENS, auth_for, authed, free_port, unavailable

pytestmark = pytest.mark.integration
WS = "/api/workspaces/w"


def needs_registry() -> None:
    if shutil.which("docker-registry") is None:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[LocalRegistry]:
    needs_registry()
    registry = LocalRegistry(tmp_path / "registry", free_port(), check_interval=0.2, unanswered_limit=3,
                             backoff=0.1)
    registry.start()
    stop = threading.Event()
    supervisor = threading.Thread(target=registry.supervise, args=(stop,), daemon=True)
    supervisor.start()
    try:
        yield registry
    finally:
        registry.stop()
        stop.set()
        supervisor.join(timeout=30)


def wait_for_restart(registry: LocalRegistry, restarts: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while registry.restarts < restarts or not registry.healthy():
        assert time.monotonic() < deadline, f"not restarted; restarts={registry.restarts}"
        time.sleep(0.05)


def test_a_killed_registry_is_reaped_and_restarted(supervised: LocalRegistry) -> None:
    assert supervised.process is not None
    first = supervised.process.pid
    os.kill(first, signal.SIGKILL)
    wait_for_restart(supervised, 1)
    assert supervised.process is not None and supervised.process.pid != first
    assert not Path(f"/proc/{first}").exists()  # reaped: no zombie left
    assert httpx.get(f"http://{supervised.host}/v2/", timeout=2).status_code == 200


def test_a_stopped_registry_that_no_longer_answers_is_replaced(supervised: LocalRegistry) -> None:
    assert supervised.process is not None
    stalled = supervised.process.pid
    os.kill(stalled, signal.SIGSTOP)  # alive, holding its port, answering nothing
    try:
        wait_for_restart(supervised, 1)
    finally:
        if Path(f"/proc/{stalled}").exists():
            os.kill(stalled, signal.SIGKILL)
    assert supervised.process is not None and supervised.process.pid != stalled
    assert not Path(f"/proc/{stalled}").exists()


def test_two_serves_never_share_a_registry(tmp_path: Path) -> None:
    needs_registry()
    port = free_port()
    first = LocalRegistry(tmp_path / "one" / "registry", port)
    first.start()
    try:
        # Another data folder, the same port: refused, not silently sharing the first one's storage.
        with pytest.raises(RegistryUnavailable, match=f"port {port} already has a registry .*--registry-port"):
            LocalRegistry(tmp_path / "two" / "registry", port).start()
        # The same data folder (another serve of it): refused by the folder's lock.
        with pytest.raises(RegistryUnavailable, match="another envhub serve"):
            LocalRegistry(tmp_path / "one" / "registry", free_port()).start()
    finally:
        first.stop()
    again = LocalRegistry(tmp_path / "one" / "registry", port)  # the lock is free again once stopped
    again.start()
    again.stop()


@pytest.fixture
def stalled_host() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


@pytest.fixture
def stalled_server(tmp_path: Path, stalled_host: str) -> Iterator[str]:
    """envhub's app under uvicorn (AnyIO's thread pool of 40, as `envhub serve`) with a stalled registry."""
    settings = Settings(data_dir=tmp_path / "data", registry=stalled_host, insecure_registries=stalled_host,
                        worker=False)
    port = free_port()
    services = build_services(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    SERVER_TOKENS[url] = admin_token(services)
    try:
        yield url
    finally:
        SERVER_TOKENS.pop(url, None)
        server.should_exit = True
        thread.join(timeout=20)


def test_a_stalled_registry_holds_up_no_other_route(stalled_server: str) -> None:
    url = stalled_server
    definition = {"image": "python:3.11", "conda_file": {"dependencies": ["python=3.11"]}}
    assert authed.post(f"{url}{WS}/environments/e/versions", json=definition).status_code == 201
    timings: list[float] = []
    stop = threading.Event()

    def probe_others() -> None:
        with httpx.Client(timeout=30, headers=auth_for(url)) as client:
            while not stop.is_set():
                for path in ("/api/health/live", f"{WS}/environments/e/versions/1", f"{WS}/environments"):
                    started = time.monotonic()
                    assert client.get(f"{url}{path}").status_code == 200
                    timings.append(time.monotonic() - started)
                time.sleep(0.01)

    # One client for all: a client per request would spend seconds of this process's CPU on TLS contexts.
    ensurer = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=100), headers=auth_for(url))

    def ensure(_: int) -> tuple[int, float]:
        started = time.monotonic()
        response = ensurer.post(f"{url}{WS}/environments/e/versions/1/image")
        return response.status_code, time.monotonic() - started

    prober = threading.Thread(target=probe_others, daemon=True)
    prober.start()
    with ensurer, ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(ensure, range(100)))
    stop.set()
    prober.join(timeout=30)

    assert {status for status, _ in results} == {503}  # an outage, never a miss (no build started)
    assert max(took for _, took in results) < 5  # the 3 s deadline, not ~10 s of retries
    timings.sort()
    p99 = timings[max(0, int(len(timings) * 0.99) - 1)]
    print(f"\nother GETs during 100 stalled ensures: n={len(timings)}, p50={timings[len(timings) // 2]:.3f} s, "
          f"p99={p99:.3f} s, max={timings[-1]:.3f} s; slowest ensure {max(t for _, t in results):.2f} s")
    assert len(timings) >= 10 and p99 < 1.0

    # The circuit is open now: an ensure is answered at once, with no connection to the registry.
    started = time.monotonic()
    response = authed.post(f"{url}{WS}/environments/e/versions/1/image", timeout=10)
    assert response.status_code == 503 and time.monotonic() - started < 0.5
    assert int(response.headers["Retry-After"]) > 0


def test_a_starting_builder_clears_what_a_killed_one_left(tmp_path: Path) -> None:
    if not Buildah.available():
        unavailable("buildah is not installed")
    root = tmp_path / "buildah"
    buildah = Buildah(root)
    made = buildah.run("from", "--name", "left-behind", "scratch")
    assert made.returncode == 0, made.stderr
    (root / "runs" / "abc-1234").mkdir(parents=True)
    (root / "runs" / "abc-1234" / "Dockerfile").write_text("FROM scratch\n")
    (root / "runs" / "abc-1234.json").write_text('{"state": "succeeded"}')
    assert len(buildah.containers()) == 1

    builder = BuildahBuilder(root)
    assert buildah.containers() == []
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["abc-1234.json"]  # outcomes stay

    # Another builder of the same folder while the first lives (a CLI beside a serve) clears nothing.
    assert buildah.run("from", "--name", "running", "scratch").returncode == 0
    BuildahBuilder(root)
    assert len(buildah.containers()) == 1
    del builder
