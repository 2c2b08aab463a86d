"""The workspace datastore (ARM routes) on Azurite and without Blob Storage: SAS scope, folder imports, refusals."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import ContainerClient
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.adapters.azurite import ACCOUNT, Azurite
from shared.bootstrap import build_services
from shared.settings import Settings
from shared.sources.folders import ContextFolder
from tests.auth import admin_token, token_for
from tests.emulators import azurite_or_skip

WS = "/api/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces"
STORE = f"{WS}/ws/datastores/workspaceblobstore"
FILES = {"Dockerfile": b"FROM envhub/busybox:latest\nCOPY app /app\n", "app/main.py": b"print('hi')\n",
         "app/data/empty.txt": b"", "requirements.txt": b"numpy==2.1.0\n"}


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with ExitStack() as stack:
        yield azurite_or_skip(stack)


def _client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(build_services(settings))) as test_client:
        test_client.headers["authorization"] = f"Bearer {admin_token(test_client.app.state.services)}"  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture
def client(tmp_path: Path, azurite: Azurite) -> Iterator[TestClient]:
    """envhub over SQLite with its build contexts (and so its datastore) on Azurite."""
    yield from _client(Settings(data_dir=tmp_path / "data", contexts="blob", storage_create=True,
                                storage_connection_string=azurite.connection_string,
                                blob_container=f"ctx-{tmp_path.name[-20:].lower().replace('_', '-')}",
                                max_context_files=5))


def _upload(azurite: Azurite, container: str, sas: str, folder: str, files: dict[str, bytes], *,
            complete: bool = True) -> None:
    """What azure-ai-ml does with the SAS: each file with If-None-Match: *, then the first one marked completed."""
    uploads = ContainerClient(azurite.blob_endpoint, container, credential=sas)
    for rel, data in files.items():
        uploads.upload_blob(f"{folder}{rel}", data, overwrite=False)
    if complete:
        uploads.get_blob_client(f"{folder}{next(iter(files))}").set_blob_metadata(
            {"upload_status": "completed", "name": "x", "version": "1"})


def _datastore(client: TestClient) -> tuple[str, str]:
    got = client.get(STORE)
    assert got.status_code == 200, got.text
    props = got.json()["properties"]
    secrets = client.post(f"{STORE}/listSecrets", json={"expirableSecret": True, "expireAfterHours": 1})
    assert secrets.status_code == 200, secrets.text
    assert secrets.json()["secretsType"] == "Sas"
    return str(props["containerName"]), str(secrets.json()["sasToken"])


def _put(client: TestClient, name: str, uri: str, version: str = "1") -> Any:
    return client.put(f"{WS}/ws/environments/{name}/versions/{version}",
                      json={"properties": {"build": {"contextUri": uri, "dockerfilePath": "Dockerfile"}}})


def _uri(container: str, folder: str) -> str:
    return f"https://{ACCOUNT}.blob.envhub.test/{container}/{folder}"


def test_the_datastore_is_the_workspaces_own_container(client: TestClient, azurite: Azurite) -> None:
    got = client.get(STORE).json()
    assert got["id"] == f"{STORE.removeprefix('/api')}" and got["name"] == "workspaceblobstore"
    props = got["properties"]
    assert (props["datastoreType"], props["accountName"], props["credentials"]) == ("AzureBlob", ACCOUNT,
                                                                                    {"credentialsType": "Sas"})
    assert props["containerName"].startswith("uploads-ws-")
    other = client.get(STORE.replace("/ws/", "/ws2/")).json()["properties"]["containerName"]
    assert other != props["containerName"]
    service = ContainerClient.from_connection_string(azurite.connection_string, props["containerName"])
    assert service.exists()  # made on first use
    listed = client.get(STORE.removesuffix("/workspaceblobstore")).json()["value"]
    assert [d["name"] for d in listed] == ["workspaceblobstore"]
    missing = client.get(STORE.replace("workspaceblobstore", "other"))
    assert missing.status_code == 404 and "workspaceblobstore" in missing.json()["error"]["message"]


def test_the_secret_writes_to_that_container_only(client: TestClient, azurite: Azurite) -> None:
    container, sas = _datastore(client)
    expiry = datetime.fromisoformat(parse_qs(sas)["se"][0].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < expiry - datetime.now(UTC) <= timedelta(hours=1, minutes=1)
    assert parse_qs(sas)["sp"] == ["rcw"]  # read, create, write: no list, no delete
    _upload(azurite, container, sas, "LocalUpload/a/ctx/", {"f.txt": b"x"})
    uploads = ContainerClient(azurite.blob_endpoint, container, credential=sas)
    assert uploads.download_blob("LocalUpload/a/ctx/f.txt").readall() == b"x"
    with pytest.raises(HttpResponseError) as listing:
        list(uploads.list_blobs())
    assert listing.value.status_code == 403
    with pytest.raises(HttpResponseError) as deleting:
        uploads.delete_blob("LocalUpload/a/ctx/f.txt")
    assert deleting.value.status_code == 403
    other, _ = _datastore_of(client, "ws2")
    with pytest.raises(HttpResponseError) as elsewhere:
        ContainerClient(azurite.blob_endpoint, other, credential=sas).upload_blob("x", b"x")
    assert elsewhere.value.status_code == 403


def _datastore_of(client: TestClient, workspace: str) -> tuple[str, str]:
    props = client.get(STORE.replace("/ws/", f"/{workspace}/")).json()["properties"]
    return str(props["containerName"]), ""


def test_readers_get_no_secret(client: TestClient) -> None:
    reader = token_for(client.app.state.services, "ws", "reader")  # type: ignore[attr-defined]
    headers = {"authorization": f"Bearer {reader}"}
    assert client.get(STORE, headers=headers).status_code == 200
    refused = client.post(f"{STORE}/listSecrets", json={}, headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"


def test_an_uploaded_folder_becomes_the_context_envhub_register_makes(client: TestClient, azurite: Azurite,
                                                                      tmp_path: Path) -> None:
    container, sas = _datastore(client)
    folder = f"LocalUpload/{hashlib.sha256(b'ctx').hexdigest()[:32]}/ctx/"
    _upload(azurite, container, sas, folder, FILES)
    created = _put(client, "uploaded", _uri(container, folder))
    assert created.status_code == 201, created.text
    local = tmp_path / "ctx"
    for rel, data in FILES.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    digest = ContextFolder(local).manifest.digest
    assert created.json()["properties"]["build"]["contextUri"] == digest
    record = client.get("/api/workspaces/ws/environments/uploaded/versions/1").json()
    assert record["definition"]["build"]["context"] == digest
    again = _put(client, "uploaded", _uri(container, folder))  # what the SDK sends when the folder is known
    assert again.status_code == 200 and again.json()["properties"]["build"]["contextUri"] == digest


@pytest.mark.parametrize(("folder", "files", "complete", "status", "says"), [
    ("LocalUpload/n/ctx/", {}, True, 400, "nothing was uploaded"),
    ("LocalUpload/i/ctx/", {"Dockerfile": b"FROM x\n"}, False, 400, "not complete"),
    ("LocalUpload/m/ctx/", {f"f{i}": b"x" for i in range(6)}, True, 400, "more than 5 files"),
    ("LocalUpload/p/ctx/", {"Dockerfile": b"FROM x\n", "a//b": b"1"}, True, 400, "not normalised"),
])
def test_bad_uploads_are_refused_and_register_nothing(client: TestClient, azurite: Azurite, folder: str,
                                                      files: dict[str, bytes], complete: bool, status: int,
                                                      says: str) -> None:
    container, sas = _datastore(client)
    if files:
        _upload(azurite, container, sas, folder, files, complete=complete)
    refused = _put(client, "bad", _uri(container, folder))
    assert refused.status_code == status, refused.text
    assert says in refused.json()["error"]["message"]
    assert client.get(f"{WS}/ws/environments/bad").status_code == 404


def test_a_context_uri_outside_the_workspace_container_is_refused(client: TestClient, azurite: Azurite) -> None:
    other, _ = _datastore_of(client, "ws2")
    refused = _put(client, "elsewhere", _uri(other, "LocalUpload/a/ctx/"))
    assert refused.status_code == 400 and "not this workspace's" in refused.json()["error"]["message"]
    assert refused.json()["error"]["target"] == "properties.build.contextUri"


@pytest.fixture
def files_client(tmp_path: Path) -> Iterator[TestClient]:
    """envhub with its build contexts as files: no Blob Storage, so no datastore."""
    yield from _client(Settings(data_dir=tmp_path / "data"))


def test_without_blob_storage_the_datastore_says_what_to_do(files_client: TestClient) -> None:
    missing = files_client.get(STORE)
    assert missing.status_code == 404 and "envhub register" in missing.json()["error"]["message"]
    assert files_client.post(f"{STORE}/listSecrets", json={}).status_code == 404
    refused = _put(files_client, "x", _uri("uploads-ws-0", "LocalUpload/a/ctx/"))
    assert refused.status_code == 400 and "ENVHUB_CONTEXTS=file" in refused.json()["error"]["message"]
