"""Registries off ENVHUB_ALLOWED_REGISTRIES are never contacted: a loopback listener counts every TCP connection
while registrations, a rebinding name, redirects, token realms, buildah and ACR Tasks try to reach it."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared import factories
from shared.adapters import guarded_network
from shared.adapters.acr_tasks import AcrTasksBuilder
from shared.adapters.buildah import BuildahBuilder
from shared.adapters.oci_registry import OciRegistry
from shared.bootstrap import build_services
from shared.domain.errors import BuildFailed, RegistryUnavailable
from shared.domain.images import ImageRef
from shared.domain.outbound import ALLOWLIST_SETTING
from shared.domain.plans import BuildPlan, GeneratedContext
from shared.settings import Settings
from tests.auth import authorized
from tests.integration.test_api_contexts_jobs import member, tar_gz, upload
from tests.integration.test_api_environments import SKLEARN, WS, assert_problem
from tests.integration.test_registry_scan_support import Reply, Seen, at, distribution, stand_in
from tests.stack import running_registry
from tests.standins.security import FakeCredential

pytestmark = pytest.mark.integration
CONDA = SKLEARN["conda_file"]


@dataclass
class Listener:
    """A TCP server on 127.0.0.1 that accepts (and closes) connections and counts them."""

    port: int
    accepted: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settled(self) -> int:
        """The count once connections already queued would have been accepted."""
        time.sleep(0.3)
        return self.accepted


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.05)
    state = Listener(int(server.getsockname()[1]))

    def serve() -> None:
        while not state.stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            state.accepted += 1
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield state
    state.stop.set()
    thread.join()
    server.close()


@contextmanager
def api_for(tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    services = build_services(Settings(data_dir=tmp_path / "data", **settings))
    with authorized(TestClient(create_app(services))) as client:
        yield client


def assert_refused(response: Any, where: str, *words: str) -> None:
    body = assert_problem(response, 422, ALLOWLIST_SETTING, *words)
    assert body["type"] == "urn:envhub:problem:registry-not-allowed" and body["where"] == where, body


def refused_images(port: int) -> list[str]:
    return [f"127.0.0.1:{port}/team/app:1", f"[::ffff:127.0.0.1]:{port}/team/app:1", f"localhost:{port}/app:1",
            "169.254.169.254/latest:1", f"user:secret@127.0.0.1:{port}/app:1", "file:///srv/secret.key",
            f"http://127.0.0.1:{port}/app:1", f"docker://127.0.0.1:{port}/app:1", "quay.io/org/app:1"]


def test_images_off_the_list_are_refused_when_registered(listener: Listener, tmp_path: Path) -> None:
    with api_for(tmp_path) as api:
        for image in refused_images(listener.port):
            assert_refused(api.post(f"{WS}/environments/e/versions", json={"image": image}), "image")
            system_managed = {"image": image, "conda_file": CONDA}  # the conda base of a generated Dockerfile
            assert_refused(api.post(f"{WS}/environments/e/versions", json=system_managed), "image")
            job = api.post(f"{WS}/jobs", json={"environment": {"image": image}, "command": "true"})
            assert_refused(job, "environment#image")
        assert "secret" not in api.post(f"{WS}/environments/e/versions", json={"image": refused_images(1)[4]}).text
        assert api.get(f"{WS}/environments").json()["value"] == []  # nothing was stored
    assert listener.settled() == 0


def test_a_from_line_off_the_list_in_a_context_is_refused(listener: Listener, tmp_path: Path) -> None:
    dockerfile = f"FROM busybox AS tools\nRUN true\nFROM 127.0.0.1:{listener.port}/evil:1\nCOPY --from=tools /a /b\n"
    with api_for(tmp_path) as api:
        digest = upload(api, tar_gz([member("Dockerfile", dockerfile.encode())])).json()["digest"]
        registered = api.post(f"{WS}/environments/e/versions", json={"build": {"context": digest}})
        assert_refused(registered, "build context: Dockerfile, line 3", f"127.0.0.1:{listener.port}")
        inline = api.post(f"{WS}/jobs", json={"environment": {"build": {"context": digest}}, "command": "true"})
        assert_refused(inline, "environment#build context: Dockerfile, line 3")
        copied = f"FROM busybox\nCOPY --from=127.0.0.1:{listener.port}/evil:1 /a /b\n"
        digest = upload(api, tar_gz([member("Dockerfile", copied.encode())])).json()["digest"]
        assert_refused(api.post(f"{WS}/environments/e/versions", json={"build": {"context": digest}}),
                       "build context: Dockerfile, line 2")
        fine = upload(api, tar_gz([member("Dockerfile", b"FROM busybox\nRUN true\n")])).json()["digest"]
        assert api.post(f"{WS}/environments/e/versions", json={"build": {"context": fine}}).status_code == 201
    assert listener.settled() == 0


def test_a_name_that_rebinds_to_loopback_is_never_connected(listener: Listener, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`rebind.test` is on the list, and resolves to 127.0.0.1 when envhub connects: the address is refused."""
    # One public address and one loopback: a name must resolve to public addresses only.
    monkeypatch.setattr(guarded_network, "resolve", lambda host, port: ["8.8.8.8", "127.0.0.1"])
    rebinding, listed = f"rebind.test:{listener.port}", listener.host
    with api_for(tmp_path, allowed_registries=f"{rebinding},{listed}") as api:
        for host in (rebinding, listed):
            assert api.post(f"{WS}/environments/{host[:6]}x/versions",
                            json={"image": f"{host}/team/app:1"}).status_code == 201
        assert listener.settled() == 0  # registering contacts nothing
        refused = assert_problem(api.post(f"{WS}/environments/rebindx/versions/1/image"), 503)
        assert listener.settled() == 0
        # The control: an IP literal on the list is exempt, so the listener does see it (it speaks no TLS).
        failed = assert_problem(api.post(f"{WS}/environments/127.0.x/versions/1/image"), 503)
        assert listener.settled() >= 1
    # Neither detail tells a refused address from a failed TLS handshake.
    assert refused["detail"] == f"{rebinding}/team/app:1: registry {rebinding} could not be reached"
    assert failed["detail"] == f"{listed}/team/app:1: registry {listed} could not be reached"


@pytest.mark.parametrize("where", ["realm", "redirect"])
def test_token_realms_and_redirects_get_the_address_check(where: str, listener: Listener,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guarded_network, "resolve", lambda host, port: ["127.0.0.1"])
    elsewhere = f"http://rebind.test:{listener.port}"

    def answer(request: Seen, _: int) -> Reply:
        if where == "realm":
            return 401, {"WWW-Authenticate": f'Bearer realm="{elsewhere}/token",service="s"'}, b""
        if "/blobs/" in request.path:
            return 307, {"Location": f"{elsewhere}/blob"}, b""
        return distribution(request)

    with stand_in(answer) as server, OciRegistry(insecure_registries={server.host}, attempts=1) as client, \
            pytest.raises(RegistryUnavailable) as caught:
        client.created(at(server.host, "team/app", "v1"))
    assert caught.value.detail == f"registry {server.host} could not be reached"
    assert listener.settled() == 0


def test_buildah_itself_refuses_a_from_off_the_list(listener: Listener, tmp_path: Path) -> None:
    """The builder as settings make it: registration bypassed, buildah still refuses before connecting."""
    with running_registry(tmp_path / "reg") as reg:
        settings = Settings(data_dir=tmp_path / "data", registry=reg.host, insecure_registries=reg.host,
                            unqualified_registry=reg.host)
        (tmp_path / "data").mkdir()
        builder = factories.make("builder", settings)
        assert isinstance(builder, BuildahBuilder)
        context = tmp_path / "context"
        context.mkdir()
        off_list = f"127.0.0.1:{listener.port}/evil:1"
        for dockerfile, extra in ((f"FROM {off_list}\n", ()),
                                  # A build argument the registration never sees: buildah's own list catches it.
                                  ("ARG BASE=busybox\nFROM $BASE\n", ("--build-arg", f"BASE={off_list}"))):
            (context / "Dockerfile").write_text(dockerfile)
            done = subprocess.run(builder.buildah.command("bud", "--isolation", "chroot", *extra, "-f",
                                                          str(context / "Dockerfile"), str(context)),
                                  capture_output=True, text=True, env=builder.buildah.env(), timeout=300, check=False)
            assert done.returncode != 0 and "not in allowed registries" in done.stderr, done.stderr
        (context / "Dockerfile").write_text(f"FROM {off_list}\n")
        target = ImageRef(registry=reg.host, repository="team/app", tag="1")
        with pytest.raises(BuildFailed, match=ALLOWLIST_SETTING):
            builder.build_folder(context, "Dockerfile", [target], print, 300, lambda: False)
        plan = BuildPlan(context_digest=None, dockerfile_path="Dockerfile", dockerfile=f"FROM {off_list}\n")
        with pytest.raises(BuildFailed, match=ALLOWLIST_SETTING):
            builder.start(build_id="b" * 32, plan=plan, context=GeneratedContext(plan), targets=[target],
                          platform="linux/amd64", timeout=300, agent_pool=None)
        assert listener.settled() == 0
        # A normal build from the workspace's registry still works, pushed there.
        (context / "Dockerfile").write_text(f"FROM {reg.base}\nRUN echo built > /built\n")
        built = builder.build_folder(context, "Dockerfile", [target], print, 300, lambda: False)
        assert built.digest.startswith("sha256:")
        with OciRegistry(insecure_registries={reg.host}) as oci:
            assert oci.head(target) == built.digest


def test_acr_tasks_schedules_no_run_for_a_from_off_the_list(listener: Listener, tmp_path: Path) -> None:
    """ACR's agents cannot be limited from here: the plan is checked before ARM (here the listener) is asked."""
    resource = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r"
    settings = Settings(builder="acr_tasks", acr_resource_id=resource, arm_endpoint=f"https://{listener.host}")
    builder = AcrTasksBuilder.from_settings(settings, credential=FakeCredential(), retry_total=0, timeout=2.0)
    target = ImageRef(registry="r.azurecr.io", repository="azureml/app", tag="latest")

    def start(dockerfile: str) -> None:
        plan = BuildPlan(context_digest=None, dockerfile_path="Dockerfile", dockerfile=dockerfile)
        builder.start(build_id="a" * 32, plan=plan, context=GeneratedContext(plan), targets=[target],
                      platform="linux", timeout=600, agent_pool=None)

    try:
        with pytest.raises(BuildFailed, match=ALLOWLIST_SETTING) as caught:
            start(f"FROM mcr.microsoft.com/azureml/base:1\nFROM {listener.host}/evil:1\n")
        assert caught.value.where == "Dockerfile, line 2"
        assert listener.settled() == 0
        with pytest.raises(Exception):  # noqa: B017 - the control: an allowed plan does ask ARM (which fails)
            start("FROM mcr.microsoft.com/azureml/base:1\n")
        assert listener.settled() >= 1
    finally:
        builder.close()
