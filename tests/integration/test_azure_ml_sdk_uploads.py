"""Azure ML's SDK uploading a build context to the workspace datastore (Azurite behind a proxy), then building."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import BuildContext, Environment

from shared.adapters.azurite import EMULATORS as EMULATOR_BIN
from tests.integration.test_azure_ml_sdk import envhub_version
from tests.sdk_server import WORKSPACE, Served, ml_client, serving_tls
from tests.support import REPO, unavailable

pytestmark = pytest.mark.integration
SUFFIX = "envhub.test"  # the cloud_metadata storage_endpoint: the SDK uploads to https://<account>.blob.envhub.test
FILES = {"Dockerfile": "FROM envhub/busybox:latest\nCOPY app /app\nRUN cat /app/main.py\n",
         "app/main.py": "print('built from an SDK upload')\n", "requirements.txt": "numpy==2.1.0\n"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`envhub serve --tls --emulators` with its worker: builds run with buildah against the local registry."""
    if not EMULATOR_BIN.is_dir():
        unavailable("the emulators are not installed (`make emulators`)")
    with serving_tls(tmp_path_factory.mktemp("sdk-uploads"), "--emulators") as served:
        yield served


@dataclass(frozen=True)
class Proxy:
    """The upload proxy `envhub serve --tls --emulators` runs, as its emulators.json names it."""

    url: str
    storage_endpoint: str


@pytest.fixture(scope="module")
def proxy(server: Served) -> Proxy:
    """The SDK's blob host routed to the server's Azurite by the server's own proxy, as DNS would in Azure."""
    known = json.loads((server.data / "emulators.json").read_text())
    assert known["storage_endpoint"] == SUFFIX
    return Proxy(known["blob_proxy"], known["storage_endpoint"])


@pytest.fixture
def ml(server: Served, proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> MLClient:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # envhub itself is reached directly
    return ml_client(server, server.token, monkeypatch, storage_endpoint=SUFFIX)


def _folder(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _uploaded(server: Served) -> bool:
    """Whether the workspace's datastore container holds an upload of the SDK's."""
    from azure.storage.blob import ContainerClient

    known = json.loads((server.data / "emulators.json").read_text())
    with server.api() as api:
        store = api.get(f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
                        f"workspaces/{WORKSPACE}/datastores/workspaceblobstore").json()["properties"]
    container = ContainerClient.from_connection_string(known["storage_connection_string"], store["containerName"])
    return any(blob.name.startswith("LocalUpload/") for blob in container.list_blobs())


def envhub(server: Served, *args: str) -> dict[str, Any]:
    """envhub's own CLI against the server, as its admin, with --json."""
    env = {**os.environ, "ENVHUB_TOKEN": server.token, "ENVHUB_DATA_DIR": str(server.data)}
    done = subprocess.run([sys.executable, "-m", "cli.main", *args, "--url", server.url, "--workspace", WORKSPACE,
                           "--json"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_an_sdk_build_context_is_envhubs_context_and_builds(ml: MLClient, server: Served, tmp_path: Path) -> None:
    context = _folder(tmp_path / "ctx", FILES)
    made = ml.environments.create_or_update(Environment(name="sdk-built", build=BuildContext(path=str(context))))
    assert made.version == "1"
    assert _uploaded(server)  # the files went to the datastore, through the proxy
    record = envhub_version(server, "sdk-built", "1")
    assert made.build is not None and made.build.path == record["definition"]["build"]["context"]

    # The same folder registered by envhub's own CLI: the same context and the same hash.
    (tmp_path / "env.yml").write_text("name: cli-built\nbuild:\n  path: ctx\n")
    registered = envhub(server, "register", str(tmp_path / "env.yml"))
    assert registered["hash"] == record["hash"]
    shown = envhub(server, "show", "cli-built:1")
    assert shown["definition"]["build"]["context"] == record["definition"]["build"]["context"]

    # Again from the same folder: the SDK finds it uploaded, envhub finds the same content: the same version.
    again = ml.environments.create_or_update(Environment(name="sdk-built", build=BuildContext(path=str(context))))
    assert again.version == "1"

    # A changed folder under the same name: a new version (the SDK's PUT of version 1 got a 409).
    (context / "app" / "main.py").write_text("print('changed')\n")
    changed = ml.environments.create_or_update(Environment(name="sdk-built", build=BuildContext(path=str(context))))
    assert changed.version == "2"
    assert envhub_version(server, "sdk-built", "2")["hash"] != record["hash"]

    built = envhub(server, "build", "sdk-built:1", "--poll", "0.2")
    assert built["status"] == "succeeded" and built["cached"] is False, built
    assert envhub(server, "build", "cli-built:1")["cached"] is True  # one image for both: the same hash


def test_the_datastore_points_the_sdk_at_the_workspace_container(ml: MLClient) -> None:
    store = ml.datastores.get("workspaceblobstore")
    assert store.account_name == "devstoreaccount1"
    assert str(store.container_name).startswith(f"uploads-{WORKSPACE}-")
    assert ml.datastores.get_default().name == "workspaceblobstore"
