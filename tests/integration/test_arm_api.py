"""The ARM routes through the FastAPI app over SQLite: scope settings, ARM-shaped errors, merges and refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.bootstrap import build_services
from shared.settings import Settings
from tests.auth import admin_token, token_for

P = "/api/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/environments"
IMAGE = "python:3.11-slim"
BODY: dict[str, Any] = {"properties": {"image": IMAGE, "condaFile": "channels:\n- conda-forge\n",
                                       "description": "one", "isAnonymous": False, "isArchived": False}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", arm_subscription="sub", arm_resource_group="RG",
                        max_body_bytes=64 * 1024)
    with TestClient(create_app(build_services(settings))) as test_client:
        test_client.headers["authorization"] = f"Bearer {admin_token(test_client.app.state.services)}"  # type: ignore[attr-defined]
        yield test_client


def arm_error(response: Any, status: int, code: str, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error
    return error


def test_ids_echo_the_scope_in_the_casing_the_sdk_parses(client: TestClient) -> None:
    created = client.put(f"{P}/env/versions/1", json=BODY)
    assert created.status_code == 201
    assert created.json()["id"] == f"{P.removeprefix('/api')}/env/versions/1"
    mixed = client.get(P.replace("/rg/", "/Rg/") + "/env")  # resource group names match in any case
    assert mixed.status_code == 200 and mixed.json()["id"] == P.removeprefix("/api").replace("/rg/", "/Rg/") + "/env"


def test_another_subscription_or_resource_group_is_an_arm_404(client: TestClient) -> None:
    arm_error(client.get(P.replace("/sub/", "/other/")), 404, "SubscriptionNotFound", "other")
    arm_error(client.get(P.replace("/rg/", "/other-rg/")), 404, "ResourceGroupNotFound", "other-rg")
    arm_error(client.get(f"{P}/env/nothing-here"), 404, "NotFound")


def test_errors_are_arm_shaped_here_and_problems_elsewhere(client: TestClient) -> None:
    arm_error(client.get(P, headers={"authorization": ""}), 401, "AuthenticationFailed")
    reader = token_for(client.app.state.services, "ws", "reader")  # type: ignore[attr-defined]
    arm_error(client.put(f"{P}/env/versions/1", json=BODY, headers={"authorization": f"Bearer {reader}"}),
              403, "AuthorizationFailed")
    own = client.get("/api/workspaces/ws/environments", headers={"authorization": ""})
    assert own.status_code == 401 and own.headers["content-type"] == "application/problem+json"
    arm_error(client.put(f"{P}/env/versions/1", content=b"{" * 200), 400, "BodyTooDeep")
    arm_error(client.put(f"{P}/env/versions/1", json={"properties": {"image": "x" * 70_000}}), 413, "BodyTooLarge")
    arm_error(client.put(f"{P}/env/versions/1", json={"nope": 1}), 400, "BadRequest", "properties")
    arm_error(client.get(f"{P}/env/versions", params={"listViewType": "Some"}), 400, "InvalidDefinition")
    arm_error(client.get(f"{P}/env/versions", params={"$orderBy": "createdtime asc"}), 400, "InvalidDefinition")


def test_put_merges_the_mutable_fields_into_the_record_envhub_serves(client: TestClient) -> None:
    client.put(f"{P}/env/versions/1", json=BODY)
    before = client.get("/api/workspaces/ws/environments/env/versions/1").json()
    changed = client.put(f"{P}/env/versions/1", json={"properties": {"image": IMAGE, "condaFile": "channels:\n"
                                                                     "- conda-forge\n", "tags": {"a": "b"}}})
    assert changed.status_code == 200 and changed.json()["properties"]["description"] == "one"
    after = client.get("/api/workspaces/ws/environments/env/versions/1").json()
    assert after["definition"]["tags"] == {"a": "b"} and after["hash"] == before["hash"]
    arm_error(client.put(f"{P}/env/versions/1", json={"properties": {"image": IMAGE}}), 409, "Conflict",
              "condaFile")
    archived = client.put(f"{P}/env/versions/2", json={"properties": {**BODY["properties"], "isArchived": True}})
    assert archived.status_code == 201 and archived.json()["properties"]["isArchived"] is True
    assert client.get(f"{P}/env").json()["properties"] == {
        "tags": {}, "properties": {}, "isArchived": False, "latestVersion": "2", "nextVersion": "3",
        "provisioningState": "Succeeded"}


def test_refusals_say_why(client: TestClient) -> None:
    anonymous = {"properties": {"image": IMAGE, "isAnonymous": True}}
    arm_error(client.put(f"{P}/CliV2AnonymousEnvironment/versions/abc", json=anonymous), 400, "InvalidDefinition",
              "not this definition's anonymous version", "from the image")
    arm_error(client.put(f"{P}/env/versions/1", json=anonymous), 400, "InvalidDefinition", "isAnonymous")
    arm_error(client.put(f"{P}/CliV2AnonymousEnvironment/versions/abc", json=BODY), 400, "InvalidDefinition",
              "isAnonymous")
    arm_error(client.put(f"{P}/AzureML-mine/versions/1", json=BODY), 400, "ReservedName")
    arm_error(client.put(f"{P}/env/versions/latest", json=BODY), 400, "InvalidDefinition", "label")
    arm_error(client.put(f"{P}/env", json={"properties": {"isArchived": True}}), 404, "ResourceNotFound")


def test_a_container_archives_and_restores_every_version(client: TestClient) -> None:
    for version in ("1", "2", "3"):
        client.put(f"{P}/env/versions/{version}", json=BODY)
    client.put(f"{P}/env/versions/2", json={"properties": {**BODY["properties"], "isArchived": True}})
    archived = client.put(f"{P}/env", json={"properties": {"isArchived": True, "tags": {}, "properties": {}}})
    assert archived.status_code == 200 and archived.json()["properties"]["isArchived"] is True
    assert client.get(P).json() == {"value": []}
    assert [c["name"] for c in client.get(P, params={"listViewType": "ArchivedOnly"}).json()["value"]] == ["env"]
    client.put(f"{P}/env", json={"properties": {"isArchived": False}})
    listed = client.get(f"{P}/env/versions", params={"listViewType": "ArchivedOnly"}).json()
    assert listed == {"value": []}  # restoring a container restores all of its versions
