"""The Azure entry point as infra/ configures it: the app settings read from infra/main.bicep, emulator endpoints
substituted (Cosmos DB server, Azurite, a Distribution registry, the ARM stand-in that builds with buildah), and
every trigger called with a real func.HttpRequest / QueueMessage / TimerRequest, end to end into the services."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.blob import ContainerClient
from pydantic import AliasChoices

from shared import factories
from shared.adapters.buildah import BuildahBuilder
from shared.adapters.oci_registry import OciRegistry
from shared.domain.builds import BuildRequest
from shared.domain.images import ImageRef
from shared.domain.scans import ScanRequest
from shared.settings import Settings
from tests.emulators import azurite_or_skip, cosmos_or_skip
from tests.faulty_proxy import failing_for
from tests.integration.test_api_contexts_jobs import member, tar_gz
from tests.registry_seed import push_history
from tests.stack import running_registry
from tests.standins.arm import serving
from tests.standins.local_runs import LocalRunner
from tests.support import REPO
from tests.unit.test_entra import header as easy_auth

pytestmark = pytest.mark.integration
INFRA = REPO / "infra"
RESOURCE_ID = "/subscriptions/0000-sub/resourceGroups/rg-envhub/providers/Microsoft.ContainerRegistry/registries/cr1"
# Settings that only an emulator takes (Settings refuses keys and connection strings for Azure endpoints).
EMULATOR_ONLY = {"cosmos_key", "cosmos_create", "storage_connection_string", "storage_create"}
# Read by the Functions host, Application Insights or azure-identity, never by envhub's code.
ENVHUB_ADMINS = "00000000-0000-0000-0000-00000000ad51"  # an Entra ID group mapped to envhub admins
HOST_PREFIXES = ("AzureWebJobsStorage__", "APPLICATIONINSIGHTS_")
SDK_SETTINGS = {"AZURE_CLIENT_ID"}
# The adapters that serve the Azure home, and the triggers.
AZURE_CODE = ["shared/adapters/cosmos_common.py", "shared/adapters/cosmos_store.py", "shared/adapters/cosmos_builds.py",
              "shared/adapters/blob_contexts.py", "shared/adapters/storage_queue.py", "shared/adapters/acr_tasks.py",
              "shared/adapters/acr_registry.py", "shared/adapters/blob_uploads.py", "functions/queues.py"]


def bicep_object(path: Path, name: str) -> dict[str, str]:
    """The entries `KEY: expression` of `var <name> = { ... }` in a Bicep file, comments left out."""
    text = path.read_text()
    start = re.search(rf"^var {name} = \{{$", text, re.M)
    assert start is not None, f"no `var {name}` in {path.name}"
    entries: dict[str, str] = {}
    for line in text[start.end():].splitlines():
        line = line.split("//")[0].strip()
        if line == "}":
            return entries
        if line:
            key, _, value = line.partition(":")
            entries[key.strip()] = value.strip()
    raise AssertionError(f"`var {name}` in {path.name} does not end")


def bicep_vars(path: Path) -> dict[str, str]:
    """`var name = 'literal'` definitions, and `param name string = 'default'` (what azd deploys by default)."""
    found = re.findall(r"^(?:var (\w+)|param (\w+) string) = '([^']*)'$", path.read_text(), re.M)
    return {var or param: value for var, param, value in found}


def setting_names() -> set[str]:
    """Every environment variable Settings reads: ENVHUB_<field>, and a field's own aliases."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"ENVHUB_{name.upper()}")
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str) and choice.isupper()}
    return names


def app_settings() -> dict[str, str]:
    """What infra/ sets on the function app: envhub's settings and the host's."""
    main, api = INFRA / "main.bicep", INFRA / "app" / "api.bicep"
    settings = bicep_object(main, "envhubSettings")
    settings |= bicep_object(api, "hostSettings")
    appended = re.search(r"appSettings: union\(envhubSettings, \{(.*?)\}\)", main.read_text(), re.S)
    assert appended is not None
    for line in appended.group(1).splitlines():
        line = line.split("//")[0].strip()
        if line:
            key, _, value = line.partition(":")
            settings[key.strip()] = value.strip()
    return settings


def read_by(paths: list[str]) -> set[str]:
    """Settings fields named as `settings.<field>` in these source files, and in the factories of the adapter
    kinds that infra/ chooses."""
    chosen = {key.removeprefix("ENVHUB_").lower(): value.strip("'") for key, value in app_settings().items()}
    sources = [(REPO / path).read_text() for path in paths]
    defaults = Settings()
    for port, (setting, kinds) in factories.FACTORIES.items():
        kind = chosen.get(setting) or str(getattr(defaults, setting))  # e.g. no webhook: no notifier
        sources.append(inspect.getsource(kinds[kind]))
        assert kind not in ("sqlite", "file", "buildah"), f"infra/ leaves {port} on a local adapter"
    fields = set(Settings.model_fields)
    return {name for source in sources for name in re.findall(r"settings\.(\w+)", source)} & fields


def test_infra_sets_no_setting_the_code_ignores() -> None:
    fields = setting_names()
    assert "PATCH_SCAN_SCHEDULE" in fields  # the one the timer trigger shares, without the prefix
    for key in app_settings():
        assert key in fields or key.startswith(HOST_PREFIXES) or key in SDK_SETTINGS, f"nothing reads {key}"


def test_infra_sets_every_setting_the_azure_adapters_read() -> None:
    infra = {key.removeprefix("ENVHUB_").lower() for key in app_settings() if key.startswith("ENVHUB_")}
    needed = read_by(AZURE_CODE) - EMULATOR_ONLY
    # Fields with a default that is right in Azure too (limits, names that match infra's resources) may be
    # left out; every adapter choice and every endpoint may not.
    defaults_ok = {"cosmos_database", "datastore_endpoint"}  # the latter is derived from the account URL
    assert needed - defaults_ok <= infra, f"set by nobody in Azure: {sorted(needed - defaults_ok - infra)}"
    for choice in ("store", "contexts", "queue", "builder", "registry_kind", "registry", "cosmos_endpoint",
                   "blob_account_url", "queue_account_url", "acr_resource_id", "arm_endpoint"):
        assert choice in infra, f"infra/ must set ENVHUB_{choice.upper()}"


def substituted(settings: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """Each Bicep expression replaced: a literal as written, anything else from `values` (or the test fails,
    so a new setting in infra/ gets a substitution here)."""
    literals = bicep_vars(INFRA / "main.bicep")
    env: dict[str, str] = {}
    for key, expression in settings.items():
        if expression.startswith("'") and expression.endswith("'"):
            env[key] = expression.strip("'")
        elif expression in literals:
            env[key] = literals[expression]
        else:
            assert expression in values, f"{key}: no emulator substitution for {expression}"
            env[key] = values[expression]
    return env


class Context:
    """The little of func.Context the ASGI bridge reads."""

    invocation_id = "test-invocation"
    function_name = "http_app_func"
    function_directory = ""
    trace_context = None
    retry_context = None


class Azure:
    """function_app imported on infra's settings, and what its triggers need."""

    def __init__(self, module: ModuleType, registry_host: str, public_host: str = "") -> None:
        self.module = module
        self.services = module.services
        self.registry_host = registry_host
        self.public_host = public_host  # another registry than the workspace's, on the allowlist
        self.functions = {f.get_function_name(): f for f in module.app.get_functions()}
        self.runner = asyncio.Runner()

    def http(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             content_type: str = "application/json", signed_in: bool = True) -> tuple[int, Any]:
        handler = self.functions["http_app_func"].get_user_function()
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        # App Service Authentication validated an Entra ID token and passes its claims on in this header.
        principal = {"x-ms-client-principal": easy_auth(("groups", ENVHUB_ADMINS))} if signed_in else {}
        request = func.HttpRequest(method=method, url=f"http://localhost/api{path}",
                                   headers={"content-type": content_type, **principal}, body=data)
        response: func.HttpResponse = self.runner.run(handler(request, Context()))
        return response.status_code, json.loads(response.get_body() or b"null")

    def deliver(self, function: str, timeout: float = 60, queue: str = "build") -> str:
        """Take the next message of a queue from Azurite and hand it to a queue trigger, as the host does; return
        the message body."""
        consumer = self.services.consumers[queue].queue
        deadline = time.monotonic() + timeout
        while (message := consumer.receive(30)) is None:
            assert time.monotonic() < deadline, "no message arrived"
            time.sleep(0.1)
        self.functions[function].get_user_function()(QueueMessage(
            id=message.id, body=message.body.encode(), pop_receipt=message.receipt,
            dequeue_count=message.dequeue_count))
        consumer.delete(message)
        body: str = message.body
        return body


def step(body: str) -> str:
    """The kind of build step a message carries."""
    return BuildRequest.model_validate_json(body).type


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azure]:
    folder = tmp_path_factory.mktemp("azure")
    monkeypatch = pytest.MonkeyPatch()
    with ExitStack() as stack:
        stack.callback(monkeypatch.undo)
        azurite, cosmos = azurite_or_skip(stack), cosmos_or_skip(stack)
        reg = stack.enter_context(running_registry(folder))
        public = stack.enter_context(failing_for(reg.host))  # the same registry on another loopback port
        builder = BuildahBuilder(folder / "acr-buildah", insecure_registries=frozenset({reg.host}),
                                 unqualified_registry=reg.host)
        arm = stack.enter_context(serving(folder / "arm", LocalRunner(builder, reg.host, folder / "runs")))
        # The host's own settings (its storage, telemetry) matter to a host, and none runs here.
        ours = {key: value for key, value in app_settings().items() if not key.startswith(HOST_PREFIXES)}
        env = substituted(ours, {
            "cosmos.outputs.endpoint": cosmos.endpoint,
            "cosmos.outputs.databaseName": f"envhub-{uuid.uuid4().hex[:8]}",
            "storage.outputs.blobEndpoint": azurite.blob_endpoint,
            "storage.outputs.queueEndpoint": azurite.queue_endpoint,
            "registry.outputs.loginServer": reg.host,
            "registry.outputs.id": RESOURCE_ID,
            "environment().resourceManager": arm.url,
            "identity.outputs.clientId": str(uuid.uuid4()),
            "string(entraGroups)": json.dumps({ENVHUB_ADMINS: "admin"}),
        })
        env |= {
            # What only an emulator needs: its key and connection string, and containers and queues created.
            "ENVHUB_COSMOS_KEY": cosmos.key, "ENVHUB_COSMOS_CREATE": "true",
            "ENVHUB_STORAGE_CONNECTION_STRING": azurite.connection_string, "ENVHUB_STORAGE_CREATE": "true",
            # A Distribution registry over http stands in for ACR, and (behind a proxy) for a public one, listed.
            "ENVHUB_INSECURE_REGISTRIES": f"{reg.host},{public}",
            "ENVHUB_ALLOWED_REGISTRIES": f"mcr.microsoft.com,docker.io,{public}",
            # App Service's managed identity endpoint, served by the stand-in; its certificate trusted here only.
            "IDENTITY_ENDPOINT": f"{arm.url}/msi/token", "IDENTITY_HEADER": "stand-in",
            "REQUESTS_CA_BUNDLE": str(arm.ca_file), "SSL_CERT_FILE": str(arm.ca_file),
            # Checks every 10 s suit ACR; a test should not wait that long.
            "ENVHUB_BUILD_CHECK_SECONDS": "0.2", "ENVHUB_BUILD_CHECK_MAX_SECONDS": "0.5",
            "ENVHUB_DATA_DIR": str(folder / "unused-data"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        sys.modules.pop("function_app", None)
        module = importlib.import_module("function_app")
        stack.callback(sys.modules.pop, "function_app", None)
        azure = Azure(module, reg.host, public)
        stack.callback(azure.runner.close)
        yield azure


def test_the_app_starts_on_infra_settings_and_indexes_its_triggers(azure: Azure) -> None:
    assert set(azure.functions) == {"http_app_func", "build_requested", "build_gave_up", "recover_builds",
                                    "scan_requested", "scan_gave_up", "patch_scan", "collect_context_garbage",
                                    "registration_received", "registration_gave_up", "submission_received",
                                    "submission_gave_up", "recover_replies"}
    http = azure.functions["http_app_func"].get_bindings()[0]
    assert http.type == "httpTrigger" and http.route == "/{*route}"
    queue = azure.functions["build_requested"].get_bindings()[0]
    assert queue.type == "queueTrigger" and queue.queue_name == "build-requests" and queue.connection == \
        "AzureWebJobsStorage"
    assert azure.functions["build_gave_up"].get_bindings()[0].queue_name == "build-requests-poison"
    assert azure.functions["recover_builds"].get_bindings()[0].type == "timerTrigger"
    timer = azure.functions["patch_scan"].get_bindings()[0]
    assert timer.type == "timerTrigger" and timer.schedule == "%PATCH_SCAN_SCHEDULE%"
    assert azure.functions["scan_requested"].get_bindings()[0].queue_name == "scan-requests"
    assert azure.functions["scan_gave_up"].get_bindings()[0].queue_name == "scan-requests-poison"
    for trigger, queue in (("registration_received", "environment-registrations"),
                           ("registration_gave_up", "environment-registrations-poison"),
                           ("submission_received", "job-submissions"),
                           ("submission_gave_up", "job-submissions-poison")):
        assert azure.functions[trigger].get_bindings()[0].queue_name == queue
    assert azure.functions["collect_context_garbage"].get_bindings()[0].type == "timerTrigger"
    assert not (Path(azure.services.settings.data_dir)).exists()  # the Azure home writes nothing locally
    status, health = azure.http("GET", "/health")
    assert status == 200, health
    kinds = {port: entry["kind"] for port, entry in health.items() if port != "status"}
    assert kinds == {"store": "cosmos", "builds": "cosmos", "contexts": "blob", "queue": "storage",
                     "builder": "acr_tasks", "registry": "acr", "deployments": "cosmos", "scans": "cosmos",
                     "scan_queue": "storage", "notifier": "none", "tokens": "cosmos", "audit": "cosmos",
                     "uploads": "blob", "inbox": "cosmos", "registration_queue": "storage",
                     "submission_queue": "storage", "replies": "storage"}
    assert health["status"] == "ok", json.dumps(health, indent=1)
    # ENVHUB_AUTH=entra from infra: no principal from App Service, no access; the admin's changes are audited
    status, problem = azure.http("GET", "/workspaces/w/environments", signed_in=False)
    assert status == 401 and problem["type"] == "urn:envhub:problem:unauthenticated"
    assert azure.http("GET", "/workspaces/w/environments")[0] == 200


def test_register_build_and_hit_through_the_triggers(azure: Azure) -> None:
    dockerfile = f"FROM {azure.registry_host}/envhub/busybox:latest\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n"
    archive = tar_gz([member("Dockerfile", dockerfile.encode()), member("hello.txt", b"hello from ACR\n")])
    status, context = azure.http("POST", "/workspaces/w/contexts", raw=archive, content_type="application/gzip")
    assert status == 201, context
    status, record = azure.http("POST", "/workspaces/w/environments/app/versions",
                                {"build": {"context": context["digest"]}})
    assert status == 201 and record["version"] == "1"
    status, ensured = azure.http("POST", "/workspaces/w/environments/app/versions/1/image")
    assert status == 202, ensured
    build_id = ensured["build_id"]
    assert step(azure.deliver("build_requested")) == "build"  # dispatch: the run is scheduled on ACR Tasks
    for _ in range(200):
        status, build = azure.http("GET", f"/workspaces/w/builds/{build_id}")
        if build["status"] in ("succeeded", "failed", "cancelled"):
            break
        assert step(azure.deliver("build_requested")) == "check"
    assert build["status"] == "succeeded", azure.http("GET", f"/workspaces/w/builds/{build_id}/log")[1]
    assert build["builder"] == "acr_tasks" and build["attempts"] == 1
    base = ImageRef(registry=azure.registry_host, repository="envhub/busybox", tag="latest")
    assert build["base_digests"] == {str(base): OciRegistry(insecure_registries={azure.registry_host}).head(base)}
    pushed = OciRegistry(insecure_registries={azure.registry_host}).head(
        ImageRef(registry=azure.registry_host, repository=record["image"], tag="latest"))
    assert pushed == build["digest"]
    _, log = azure.http("GET", f"/workspaces/w/builds/{build_id}/log")
    assert any("hello from ACR" in line for line in log["lines"]), log["lines"]
    status, hit = azure.http("POST", "/workspaces/w/environments/app/versions/1/image")
    assert status == 200 and hit["cached"] is True and hit["digest"] == pushed


def test_the_sdk_datastore_flow_through_the_http_trigger(azure: Azure) -> None:
    """What azure-ai-ml does for a build context: the datastore, a SAS, the upload, then the version PUT."""
    workspace = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w")
    status, store = azure.http("GET", f"{workspace}/datastores/workspaceblobstore")
    assert status == 200, store
    status, secret = azure.http("POST", f"{workspace}/datastores/workspaceblobstore/listSecrets",
                                {"expirableSecret": True, "expireAfterHours": 1})
    assert status == 200 and secret["secretsType"] == "Sas", secret
    container = store["properties"]["containerName"]
    emulator = azure.services.settings.storage_connection_string
    endpoint = next(p.split("=", 1)[1] for p in str(emulator).split(";") if p.startswith("BlobEndpoint="))
    uploads = ContainerClient(endpoint, container, credential=secret["sasToken"])
    folder = "LocalUpload/0a1b/ctx/"
    uploads.upload_blob(f"{folder}Dockerfile", b"FROM envhub/busybox:latest\n")
    uploads.get_blob_client(f"{folder}Dockerfile").set_blob_metadata({"upload_status": "completed"})
    uri = f"https://{store['properties']['accountName']}.blob.core.windows.net/{container}/{folder}"
    status, made = azure.http("PUT", f"{workspace}/environments/uploaded/versions/1",
                              {"properties": {"build": {"contextUri": uri}}})
    assert status == 201, made
    status, record = azure.http("GET", "/workspaces/w/environments/uploaded/versions/1")
    assert record["definition"]["build"]["context"] == made["properties"]["build"]["contextUri"]
    assert record["definition"]["build"]["context"].startswith("sha256:")


def test_queue_messages_through_the_triggers(azure: Azure) -> None:
    """A registration and a job submission as messages, a bad one, and a message the host gave up on."""
    settings = azure.services.settings
    replies = factories.named_queue(settings, "trigger-replies")
    for queue, sent in ((settings.registration_queue, {
            "schema": "envhub.registration/1", "workspace": "w", "name": "by-queue", "correlation_id": "t-1",
            "reply_to": "trigger-replies", "definition": {"image": f"{azure.registry_host}/envhub/busybox:latest"}}),
            (settings.submission_queue, {
                "schema": "envhub.job-submission/1", "workspace": "w", "correlation_id": "t-2",
                "reply_to": "trigger-replies", "job": {"command": "echo", "environment": "azureml:by-queue:1"}})):
        factories.named_queue(settings, queue).send(json.dumps(sent))
        azure.deliver("registration_received" if queue == settings.registration_queue else "submission_received",
                      queue=queue)
    answers = [json.loads(m.body) for m in iter(lambda: replies.receive(30), None)]
    assert [(a["correlation_id"], a["status"], a["environment"]) for a in answers] == [
        ("t-1", "registered", "by-queue:1"), ("t-2", "submitted", "by-queue:1")]
    status, job = azure.http("GET", f"/workspaces/w/jobs/{answers[1]['job']}")
    assert status == 200 and job["environment_version"] == "1"

    bad = json.dumps({"schema": "envhub.registration/1", "workspace": "w", "correlation_id": "t-3",
                      "reply_to": "trigger-replies", "name": "bad", "definition": {}})
    factories.named_queue(settings, settings.registration_queue).send(bad)
    azure.deliver("registration_received", queue=settings.registration_queue)  # refused: poisoned at once
    [(body, reason)] = azure.services.consumers[settings.registration_queue].queue.poisoned()
    assert body == bad and reason.startswith("refused")
    [failed] = [json.loads(m.body) for m in iter(lambda: replies.receive(30), None)]
    assert failed["status"] == "failed" and failed["error"]["status"] == 422
    # The poison trigger sees envhub's own envelope (already answered) and a bare message the host moved.
    host_moved = json.dumps({**json.loads(bad), "correlation_id": "t-4"})
    for body in (json.dumps({"body": bad, "reason": "refused: x", "dequeue_count": 1}), host_moved):
        azure.functions["registration_gave_up"].get_user_function()(
            QueueMessage(id="p", body=body.encode(), pop_receipt="r", dequeue_count=1))
    [gave_up] = [json.loads(m.body) for m in iter(lambda: replies.receive(30), None)]
    assert (gave_up["correlation_id"], gave_up["status"], gave_up["error"]["status"]) == ("t-4", "failed", 503)


def test_a_poisoned_build_message_fails_its_build(azure: Azure) -> None:
    azure.http("POST", "/workspaces/w/environments/doomed/versions",
               {"image": "python:3.11", "conda_file": {"dependencies": ["python=3.11"]}})
    status, ensured = azure.http("POST", "/workspaces/w/environments/doomed/versions/1/image")
    assert status == 202, ensured
    azure.deliver("build_gave_up")
    _, build = azure.http("GET", f"/workspaces/w/builds/{ensured['build_id']}")
    assert build["status"] == "failed" and "gave up" in build["reason"]


def test_the_recovery_timer_resends_a_stale_build(azure: Azure, monkeypatch: pytest.MonkeyPatch) -> None:
    azure.http("POST", "/workspaces/w/environments/stale/versions", {"image": "python:3.12",
                                                                     "conda_file": {"dependencies": ["pip"]}})
    status, ensured = azure.http("POST", "/workspaces/w/environments/stale/versions/1/image")
    assert status == 202
    lost = azure.services.consumer.receive(30)  # the build message is lost
    assert lost is not None
    azure.services.consumer.delete(lost)
    monkeypatch.setattr(azure.services.building, "policy",
                        dataclasses.replace(azure.services.building.policy, stale_after=0.0))
    azure.functions["recover_builds"].get_user_function()(TimerRequest(past_due=False))
    again = azure.services.consumer.receive(30)
    assert again is not None and BuildRequest.model_validate_json(again.body).build_id == ensured["build_id"]
    azure.services.consumer.delete(again)


def test_the_patch_scan_timer_fans_out_and_the_queue_trigger_scans(azure: Azure) -> None:
    # A public base image: another registry than the workspace's (its listing is ACR's own /acr/v1 API, which
    # the Distribution registry standing in for ACR lacks), so the same registry behind a proxy.
    host = azure.public_host
    push_history(host, "patched/base", [("20230620.v1", datetime(2023, 6, 20, tzinfo=UTC)),
                                         ("20231010.v1", datetime(2023, 10, 10, tzinfo=UTC))])
    status, _ = azure.http("PUT", "/workspaces/w/environments/on-old-base/versions/1",
                           {"image": f"{host}/patched/base:20230620.v1"})
    assert status == 201
    now = datetime(2024, 1, 15, tzinfo=UTC)
    scanning = azure.services.scanning
    scanning.clock = scanning.concluder.clock = lambda: now  # an injected clock: nothing waits in real time
    azure.functions["patch_scan"].get_user_function()(TimerRequest(past_due=False))
    (scan,) = scanning.list_scans(top=1, cursor=None).items
    assert scan.trigger == "timer" and scan.status == "running"
    for _ in scan.repositories:  # the timer only fanned out: one message per base repository
        assert ScanRequest.model_validate_json(azure.deliver("scan_requested", queue="scan")).scan_id == scan.id
    status, body = azure.http("GET", f"/patch-scans/{scan.id}")
    assert status == 200 and body["status"] == "finished", body
    assert {"workspace": "w", "environment": "on-old-base:1", "type": "patch_available",
            "base_image": f"{host}/patched/base:20230620.v1", "current": "20230620.v1", "available": "20231010.v1",
            "overdue": True, "new": True} in body["findings"]
    status, page = azure.http("GET", "/workspaces/w/findings?status=open")
    assert status == 200 and any(f["environment"] == "on-old-base:1" for f in page["value"])


def test_the_garbage_timer_removes_orphan_blobs_from_blob_storage(azure: Azure) -> None:
    store = azure.services.contexts.store
    sha, _ = store.write_blob([b"an orphan: a refused upload's file"])
    azure.services.settings.__dict__["context_gc_hours"] = 0.0  # anything older than now
    try:
        azure.functions["collect_context_garbage"].get_user_function()(TimerRequest(past_due=False))
    finally:
        azure.services.settings.__dict__["context_gc_hours"] = 24.0
    assert not store.has_blob(sha)
