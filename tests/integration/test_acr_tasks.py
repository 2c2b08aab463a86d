"""AcrTasksBuilder against a recording https stand-in for ARM: exact requests, logs, states, faults, a real build."""

from __future__ import annotations

import io
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.adapters.acr_tasks import API_VERSION, AcrTasksBuilder
from shared.adapters.buildah import BuildahBuilder
from shared.adapters.oci_registry import OciRegistry
from shared.domain.builds import RunState, RunStatus
from shared.domain.errors import BuilderUnavailable, BuildFailed
from shared.domain.images import ImageRef
from shared.domain.outbound import Allowlist
from shared.domain.plans import BuildPlan
from shared.settings import Settings
from shared.sources.folders import ContextFolder
from tests.stack import require_build_tools, running_registry
from tests.standins.arm import REGISTRY, Served, serving
from tests.standins.local_runs import LocalRunner
from tests.standins.security import FakeCredential

pytestmark = pytest.mark.integration

RESOURCE_ID = REGISTRY.format(sub="0000-sub", rg="envhub-rg", name="envhubacr")
ACR = "acr.test"  # a reserved name: the adapter drops the host, ACR pushes into itself
TARGETS = [ImageRef(registry=ACR, repository="azureml/azureml_0123", tag="latest"),
           ImageRef(registry=ACR, repository="azureml/azureml_0123", tag="20250101.abcdef012345")]
DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "tls") as running:
        yield running


def builder_for(served: Served, credential: Any = None, **options: Any) -> AcrTasksBuilder:
    """The adapter as production makes it (from settings), trusting the stand-in's CA, failing fast."""
    settings = Settings(builder="acr_tasks", acr_resource_id=RESOURCE_ID, arm_endpoint=served.url)
    defaults: dict[str, Any] = {"connection_verify": str(served.ca_file), "retry_total": 0, "timeout": 5.0}
    return AcrTasksBuilder.from_settings(settings, credential=credential or FakeCredential(), **(defaults | options))


@pytest.fixture
def builder(served: Served) -> Iterator[AcrTasksBuilder]:
    made = builder_for(served)
    yield made
    made.close()


def context_folder(folder: Path, dockerfile: str = "FROM base\nCOPY hello.txt /\n") -> ContextFolder:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile)
    (folder / "hello.txt").write_text("hello from the context\n")
    return ContextFolder(folder)


def start(builder: AcrTasksBuilder, tmp_path: Path, **overrides: Any) -> str:
    context = context_folder(tmp_path / "context")
    text = context.read_text("Dockerfile") or ""
    arguments: dict[str, Any] = {
        "build_id": "b" * 32, "targets": TARGETS, "platform": "linux", "timeout": 3600.0, "agent_pool": None,
        "plan": BuildPlan(context_digest=context.manifest.digest, dockerfile_path="Dockerfile", dockerfile=text)}
    return builder.start(context=context, **(arguments | overrides))


def test_start_uploads_the_context_and_schedules_a_docker_build(served: Served, tmp_path: Path) -> None:
    credential = FakeCredential()
    builder = builder_for(served, credential)
    run_id = start(builder, tmp_path)

    arm = served.arm
    assert run_id == "cb1"
    assert [(r.method, r.path) for r in arm.requests] == [
        ("POST", f"{RESOURCE_ID}/listBuildSourceUploadUrl"), ("PUT", arm.requests[1].path),
        ("POST", f"{RESOURCE_ID}/scheduleRun")]
    for call in (arm.requests[0], arm.requests[2]):
        assert call.query == {"api-version": API_VERSION}
        assert call.bearer == FakeCredential.token
    assert credential.scopes and set(credential.scopes) == {(f"{served.url}/.default",)}

    put = arm.requests[1]
    upload_url = arm.calls("upload_url")[0]
    assert put.path.startswith("/blobs/") and put.query["sig"] == "standin"
    assert put.headers["x-ms-blob-type"] == "BlockBlob" and "authorization" not in put.headers  # a SAS, no token
    with tarfile.open(fileobj=io.BytesIO(put.body), mode="r:gz") as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert members == {"Dockerfile": b"FROM base\nCOPY hello.txt /\n", "hello.txt": b"hello from the context\n"}
    assert put.headers["content-length"] == str(len(put.body)) and "transfer-encoding" not in put.headers
    assert upload_url.body == b""

    body = arm.requests[2].json
    assert body == {
        "type": "DockerBuildRequest", "isArchiveEnabled": False, "isPushEnabled": True, "noCache": False,
        "imageNames": ["azureml/azureml_0123:latest", "azureml/azureml_0123:20250101.abcdef012345"],
        "dockerFilePath": "Dockerfile", "timeout": 3600, "platform": {"os": "Linux", "architecture": "amd64"},
        "sourceLocation": body["sourceLocation"]}
    assert body["sourceLocation"].startswith("source/") and body["sourceLocation"].endswith(put.path.split("/")[-1])
    assert "agentPoolName" not in body


@pytest.mark.parametrize(("timeout", "platform", "pool", "sent"), [
    (10.0, "linux", "pool-a", {"timeout": 300, "platform": {"os": "Linux", "architecture": "amd64"},
                               "agentPoolName": "pool-a"}),
    (100_000.0, "windows", None, {"timeout": 28800, "platform": {"os": "Windows", "architecture": "amd64"}}),
    (1800.5, "linux/arm64", "", {"timeout": 1800, "platform": {"os": "Linux", "architecture": "arm64"}}),
])
def test_timeout_platform_and_agent_pool(builder: AcrTasksBuilder, served: Served, tmp_path: Path, timeout: float,
                                         platform: str, pool: str | None, sent: dict[str, Any]) -> None:
    start(builder, tmp_path, timeout=timeout, platform=platform, agent_pool=pool)
    body = served.arm.calls("schedule")[0].json
    assert {k: body.get(k) for k in sent} == sent
    assert ("agentPoolName" in body) == bool(pool)


def test_an_unknown_platform_is_the_plans_fault(builder: AcrTasksBuilder, served: Served, tmp_path: Path) -> None:
    with pytest.raises(BuildFailed):
        start(builder, tmp_path, platform="plan9")
    assert served.arm.requests == []


def test_the_log_is_read_incrementally_in_whole_lines(builder: AcrTasksBuilder, served: Served,
                                                      tmp_path: Path) -> None:
    run_id = start(builder, tmp_path)
    run = served.arm.runs[run_id]

    assert builder.poll(run_id, 0) == RunStatus(state=RunState.QUEUED, log_offset=0)
    assert served.arm.calls("log_link") == []  # a queued run has no log to ask for

    run.advance("Running", "Step 1/2 : FROM base\r\nStep 2/2 : COPY h")
    first = builder.poll(run_id, 0)
    assert (first.state, first.log) == (RunState.RUNNING, ["Step 1/2 : FROM base"])
    assert first.log_offset == len(b"Step 1/2 : FROM base\r\n")  # the partial line waits for its end

    run.advance("Running", "ello.txt /\ncafé ☕\n")
    second = builder.poll(run_id, first.log_offset)
    assert second.log == ["Step 2/2 : COPY hello.txt /", "café ☕"]
    assert second.log_offset == len(run.log)

    third = builder.poll(run_id, second.log_offset)  # nothing new: the blob answers 416
    assert (third.log, third.log_offset) == ([], second.log_offset)

    run.advance("Succeeded", "Run ID: cb1 was successful", digest=DIGEST)  # a last line without a newline
    done = builder.poll(run_id, third.log_offset)
    assert done == RunStatus(state=RunState.SUCCEEDED, log=["Run ID: cb1 was successful"], log_offset=len(run.log),
                             digest=DIGEST)

    ranges = [r.headers["range"] for r in served.arm.calls("get_log")]
    assert ranges == [f"bytes={o}-" for o in (0, first.log_offset, second.log_offset, third.log_offset)]
    assert len(served.arm.calls("log_link")) == 1  # the SAS link is reused while it is fresh
    gets = served.arm.calls("get_run")
    assert len(gets) == 5 and {g.path for g in gets} == {f"{RESOURCE_ID}/runs/{run_id}"}
    assert all(r.query == {"api-version": API_VERSION} and r.bearer for r in [*gets, *served.arm.calls("log_link")])
    assert all("authorization" not in r.headers for r in served.arm.calls("get_log"))


def test_an_expired_log_link_is_renewed_and_a_missing_log_is_no_log(builder: AcrTasksBuilder, served: Served,
                                                                     tmp_path: Path) -> None:
    run_id = start(builder, tmp_path)
    served.arm.runs[run_id].advance("Running", "one\n")
    served.arm.fail("GET /logs/", 404)  # the run has started but written nothing yet
    assert builder.poll(run_id, 0) == RunStatus(state=RunState.RUNNING, log_offset=0)
    served.arm.fail("GET /logs/", 403, code="AuthenticationFailed", message="Signed expiry time has passed")
    assert builder.poll(run_id, 0).log == ["one"]
    assert len(served.arm.calls("log_link")) == 2


@pytest.mark.parametrize(("status", "state"), [
    ("Queued", RunState.QUEUED), ("Started", RunState.RUNNING), ("Running", RunState.RUNNING),
    ("Succeeded", RunState.SUCCEEDED), ("Failed", RunState.FAILED), ("Canceled", RunState.CANCELLED),
    ("Error", RunState.FAILED), ("Timeout", RunState.FAILED), ("SomethingNew", RunState.RUNNING),
])
def test_every_acr_status_maps_to_a_run_state(builder: AcrTasksBuilder, served: Served, tmp_path: Path,
                                              status: str, state: RunState) -> None:
    run_id = start(builder, tmp_path)
    served.arm.runs[run_id].advance(status)
    assert builder.poll(run_id, 0).state is state


@pytest.mark.parametrize(("status", "error", "reason"), [
    ("Failed", "failed to build: step 3 exited with 1", "failed to build: step 3 exited with 1"),
    ("Failed", None, "the ACR run ended with status Failed"),
    ("Error", None, "the ACR run ended with status Error"),
    ("Timeout", None, "the run timed out"),
])
def test_a_failed_run_says_why(builder: AcrTasksBuilder, served: Served, tmp_path: Path, status: str,
                               error: str | None, reason: str) -> None:
    run_id = start(builder, tmp_path)
    served.arm.runs[run_id].advance(status, "boom\n", error=error)
    polled = builder.poll(run_id, 0)
    assert (polled.state, polled.reason, polled.log, polled.digest) == (RunState.FAILED, reason, ["boom"], None)


def test_a_run_acr_does_not_know_is_lost(builder: AcrTasksBuilder, served: Served) -> None:
    assert builder.poll("cb404", 7).state is RunState.LOST
    assert builder.poll("cb404", 7).log_offset == 7
    assert served.arm.requests[0].path == f"{RESOURCE_ID}/runs/cb404"


def test_cancel_posts_and_the_run_ends_cancelled(builder: AcrTasksBuilder, served: Served, tmp_path: Path) -> None:
    run_id = start(builder, tmp_path)
    builder.cancel(run_id)
    cancel = served.arm.calls("cancel")
    assert [(c.path, c.query, bool(c.bearer)) for c in cancel] == [
        (f"{RESOURCE_ID}/runs/{run_id}/cancel", {"api-version": API_VERSION}, True)]
    assert served.arm.requests[-1] is cancel[0]  # no polling of the cancel operation afterwards
    assert builder.poll(run_id, 0).state is RunState.CANCELLED
    builder.cancel("cb404")  # an unknown run: nothing to stop


def test_check_lists_one_run(builder: AcrTasksBuilder, served: Served) -> None:
    builder.check()
    call = served.arm.requests[-1]
    assert (call.method, call.path, call.query) == ("GET", f"{RESOURCE_ID}/runs", {"api-version": API_VERSION,
                                                                                  "$top": "1"})
    served.arm.fail("/runs$", 503)
    with pytest.raises(BuilderUnavailable, match="503"):
        builder.check()


@pytest.mark.parametrize("status", [500, 503, 429, 401, 403])
@pytest.mark.parametrize("where", ["listBuildSourceUploadUrl", "PUT /blobs/", "scheduleRun"])
def test_outages_and_refused_identities_are_worth_a_retry(builder: AcrTasksBuilder, served: Served, tmp_path: Path,
                                                          status: int, where: str) -> None:
    served.arm.fail(where, status)
    with pytest.raises(BuilderUnavailable):
        start(builder, tmp_path)


def test_polling_through_an_outage_is_worth_a_retry(builder: AcrTasksBuilder, served: Served, tmp_path: Path) -> None:
    run_id = start(builder, tmp_path)
    served.arm.runs[run_id].advance("Running", "line\n")
    for where in (f"GET .*/runs/{run_id}$", "listLogSasUrl", "GET /logs/"):
        served.arm.fail(where, 503)
        with pytest.raises(BuilderUnavailable):
            builder.poll(run_id, 0)
    assert builder.poll(run_id, 0).log == ["line"]


def test_the_sdk_retries_a_passing_outage(served: Served, tmp_path: Path) -> None:
    served.arm.fail("scheduleRun", 503)
    assert start(builder_for(served, retry_total=2, retry_backoff_factor=0.01), tmp_path) == "cb1"
    assert len(served.arm.calls("schedule")) == 2


def test_a_refused_connection_or_a_failing_credential_is_worth_a_retry(served: Served, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"https://127.0.0.1:{probe.getsockname()[1]}"
    settings = Settings(builder="acr_tasks", acr_resource_id=RESOURCE_ID, arm_endpoint=nowhere)
    closed = AcrTasksBuilder.from_settings(settings, credential=FakeCredential(), retry_total=0, timeout=2.0)
    with pytest.raises(BuilderUnavailable):
        start(closed, tmp_path)
    with pytest.raises(BuilderUnavailable):
        closed.poll("cb1", 0)

    class Refusing(FakeCredential):
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise ClientAuthenticationError("no managed identity here")

    with pytest.raises(BuilderUnavailable, match="no managed identity"):
        start(builder_for(served, Refusing()), tmp_path / "again")
    assert served.arm.requests == []


def test_a_request_acr_refuses_is_the_builds_fault(builder: AcrTasksBuilder, served: Served, tmp_path: Path) -> None:
    served.arm.fail("scheduleRun", 400, code="InvalidParameter", message="dockerFilePath 'Dockerfile' is invalid")
    with pytest.raises(BuildFailed, match="dockerFilePath 'Dockerfile' is invalid"):
        start(builder, tmp_path)


def test_a_resource_id_that_names_no_registry_is_refused() -> None:
    with pytest.raises(ValueError, match="resource id"):
        AcrTasksBuilder("/subscriptions/x/resourceGroups/y", credential=FakeCredential())


def test_local_mode_builds_through_the_stand_in_into_a_real_registry(tmp_path: Path) -> None:
    """AcrTasksBuilder -> stand-in -> BuildahBuilder -> Distribution registry, and the digest it reports is real."""
    require_build_tools()
    with running_registry(tmp_path / "reg") as registry:
        buildah = BuildahBuilder(tmp_path / "buildah", insecure_registries=frozenset({registry.host}))
        runner = LocalRunner(buildah, registry.host, tmp_path / "runs")
        with serving(tmp_path / "tls", runner) as served:
            builder = builder_for(served, allowed=Allowlist.parse(registry.host))  # a loopback base, listed
            dockerfile = (f"FROM {registry.base}\nCOPY hello.txt /hello.txt\n"
                          "RUN cat /hello.txt && echo built > /built\n")
            context = context_folder(tmp_path / "context", dockerfile)
            targets = [t.model_copy(update={"registry": registry.host}) for t in TARGETS]
            plan = BuildPlan(context_digest=None, dockerfile_path="Dockerfile", dockerfile=dockerfile)
            run_id = builder.start(build_id="e" * 32, plan=plan, context=context, targets=targets,
                                   platform="linux", timeout=600.0, agent_pool=None)
            log: list[str] = []
            offset, deadline = 0, time.monotonic() + 300
            while True:
                status = builder.poll(run_id, offset)
                log += status.log
                offset = status.log_offset
                if status.state.finished or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert status.state is RunState.SUCCEEDED, (status.reason, log)
            assert "hello from the context" in log
            assert offset == len(served.arm.runs[run_id].log)  # every byte of the log was read, once
            assert status.digest is not None and status.digest.startswith("sha256:")
            with OciRegistry(insecure_registries={registry.host}) as oci:
                assert [oci.head(t) for t in targets] == [status.digest, status.digest]
