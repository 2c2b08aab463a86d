"""The environment routes end to end through the FastAPI app over a real SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.bootstrap import build_services
from shared.settings import Settings
from tests.auth import authorized

WS = "/api/workspaces/team"
SKLEARN: dict[str, Any] = {
    "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1",
    "conda_file": {"channels": ["conda-forge"], "dependencies": ["python=3.11", {"pip": ["scikit-learn"]}]},
    "description": "sklearn",
}


def register(api: TestClient, name: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
    response = api.post(f"{WS}/environments/{name}/versions", json=body)
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:envhub:problem:")
    for word in words:
        assert word in body["detail"], body
    return body


def test_register_answers_201_with_what_was_derived(api: TestClient) -> None:
    body = register(api, "sklearn", SKLEARN)
    assert body["name"] == "sklearn" and body["version"] == "1" and body["kind"] == "system_managed"
    assert len(body["hash"]) == 64 and body["image"] == "azureml/azureml_" + body["hash"][:32]
    assert body["base_images"] == [SKLEARN["image"]]
    assert body["created_at"] and body["definition"]["conda_file"] == SKLEARN["conda_file"]


def test_versions_count_up_and_latest_follows(api: TestClient) -> None:
    assert register(api, "e", SKLEARN)["version"] == "1"
    assert register(api, "e", {**SKLEARN, "description": "two"})["version"] == "2"
    latest = api.get(f"{WS}/environments/e/versions/latest").json()
    assert latest["version"] == "2" and latest["definition"]["description"] == "two"


def test_explicit_version_is_immutable_and_idempotent(api: TestClient) -> None:
    first = api.put(f"{WS}/environments/e/versions/1.0", json=SKLEARN)
    assert first.status_code == 201
    again = api.put(f"{WS}/environments/e/versions/1.0", json=SKLEARN)
    assert again.status_code == 200 and again.json()["created_at"] == first.json()["created_at"]
    other = api.put(f"{WS}/environments/e/versions/1.0", json={**SKLEARN, "image": "python:3.12"})
    assert_problem(other, 409, "already exists")
    assert api.get(f"{WS}/environments/e/versions/1.0").json()["definition"]["image"] == SKLEARN["image"]
    # an integer version after an explicit non-integer one
    assert register(api, "e", SKLEARN)["version"] == "1"


def test_version_in_body_is_used(api: TestClient) -> None:
    assert register(api, "e", {**SKLEARN, "version": "7"})["version"] == "7"
    assert register(api, "e", SKLEARN)["version"] == "8"


def test_list_hides_anonymous_and_archived_and_pages(api: TestClient) -> None:
    for name in ("c", "a", "b", "d"):
        register(api, name, SKLEARN)
    register(api, "a", {**SKLEARN, "description": "a2"})
    api.post(f"{WS}/jobs", json={"environment": SKLEARN})
    api.post(f"{WS}/environments/d/versions/1/archive")
    page = api.get(f"{WS}/environments", params={"$top": 2}).json()
    assert [(e["name"], e["version"]) for e in page["value"]] == [("a", "2"), ("b", "1")]
    assert page["nextLink"] is not None and "skiptoken=b" in page["nextLink"]
    rest = api.get(page["nextLink"]).json()
    assert [e["name"] for e in rest["value"]] == ["c"] and rest["nextLink"] is None


def test_history_newest_first_and_pages(api: TestClient) -> None:
    for i in range(5):
        register(api, "h", {**SKLEARN, "description": str(i)})
    page = api.get(f"{WS}/environments/h/versions", params={"$top": 3}).json()
    assert [e["version"] for e in page["value"]] == ["5", "4", "3"]
    rest = api.get(page["nextLink"]).json()
    assert [e["version"] for e in rest["value"]] == ["2", "1"]


def test_archive_hides_from_latest_and_restore_brings_back(api: TestClient) -> None:
    register(api, "e", SKLEARN)
    register(api, "e", {**SKLEARN, "description": "2"})
    archived = api.post(f"{WS}/environments/e/versions/2/archive").json()
    assert archived["archived"] is True
    assert api.get(f"{WS}/environments/e/versions/latest").json()["version"] == "1"
    assert api.get(f"{WS}/environments/e/versions/2").json()["archived"] is True
    api.post(f"{WS}/environments/e/versions/2/restore")
    assert api.get(f"{WS}/environments/e/versions/latest").json()["version"] == "2"
    assert_problem(api.post(f"{WS}/environments/e/versions/9/archive"), 404, "'9'")


def test_diff_names_changed_fields_and_hash(api: TestClient) -> None:
    register(api, "e", SKLEARN)
    register(api, "e", {**SKLEARN, "description": "other"})
    reordered = {"channels": ["conda-forge"], "dependencies": [{"pip": ["scikit-learn"]}, "python=3.11"]}
    register(api, "e", {**SKLEARN, "conda_file": reordered})
    only_text = api.get(f"{WS}/environments/e/versions/2/diff", params={"against": "1"}).json()
    assert only_text["hash_changed"] is False
    assert [c["field"] for c in only_text["changes"]] == ["description"]
    deps = api.get(f"{WS}/environments/e/versions/3/diff", params={"against": "1"}).json()
    assert deps["hash_changed"] is True and [c["field"] for c in deps["changes"]] == ["conda_file.dependencies"]


def test_hash_endpoint_stores_nothing(api: TestClient) -> None:
    response = api.post("/api/hash", json=SKLEARN)
    assert response.status_code == 200
    assert response.json()["hash"] == register(api, "e", SKLEARN)["hash"]
    assert [e["name"] for e in api.get(f"{WS}/environments").json()["value"]] == ["e"]


@pytest.mark.parametrize(
    ("name", "body", "status", "words"),
    [
        ("AzureML-sklearn", SKLEARN, 422, ("reserved", "new name")),
        ("microsoftThing", SKLEARN, 422, ("reserved",)),
        ("CliV2AnonymousEnvironment", SKLEARN, 422, ("anonymous",)),
        ("bad name", SKLEARN, 422, ("not a valid name",)),
        ("e", {**SKLEARN, "version": "latest"}, 422, ("label",)),
        ("e", {"conda_file": SKLEARN["conda_file"]}, 422, ("exactly one",)),
        ("e", {**SKLEARN, "build": {"context": "sha256:" + "0" * 64}}, 422, ("not both",)),
        ("e", {"build": {"context": "sha256:" + "0" * 64}}, 422, ("upload it first",)),
        ("e", {"build": {"path": "./ctx"}}, 422, ("upload",)),
        ("e", {**SKLEARN, "colour": "red"}, 422, ("unknown field",)),
        ("e", {**SKLEARN, "os_type": "macos"}, 422, ("os_type",)),
        ("e", {**SKLEARN, "name": "other"}, 422, ("URL names",)),
        ("e", {**SKLEARN, "tags": ["x"]}, 422, ("tags",)),
    ],
)
def test_bad_registrations_are_problems_and_store_nothing(
    api: TestClient, name: str, body: dict[str, Any], status: int, words: tuple[str, ...]
) -> None:
    assert_problem(api.post(f"{WS}/environments/{name}/versions", json=body), status, *words)
    assert api.get(f"{WS}/environments").json()["value"] == []


def test_malformed_json_is_a_problem(api: TestClient) -> None:
    response = api.post(f"{WS}/environments/e/versions", content=b"{not json",
                        headers={"content-type": "application/json"})
    assert_problem(response, 422, "JSON")


def test_unknown_version_is_404_problem(api: TestClient) -> None:
    assert_problem(api.get(f"{WS}/environments/nope/versions/latest"), 404, "'nope'")
    assert_problem(api.get(f"{WS}/environments/nope/versions"), 404, "'nope'")


def test_curated_names_are_refused_and_readable(curated_api: TestClient) -> None:
    assert_problem(curated_api.post(f"{WS}/environments/sklearn-1.0/versions", json=SKLEARN), 422,
                   "curated", "new name")
    curated = curated_api.get(f"{WS}/environments/sklearn-1.0/versions/latest").json()
    assert curated["kind"] == "curated" and curated["curated"] is True
    assert curated["base_images"][0].startswith("mcr.microsoft.com/azureml/")
    catalog = curated_api.get("/api/curated-environments").json()["value"]
    assert len(catalog) == 40 and all(e["kind"] == "curated" for e in catalog)


def test_openapi_and_docs(api: TestClient) -> None:
    spec = api.get("/api/openapi.json").json()
    assert "/api/workspaces/{workspace}/environments/{name}/versions" in spec["paths"]
    ensure = spec["paths"]["/api/workspaces/{workspace}/environments/{name}/versions/{version}/image"]["post"]
    assert {"200", "202", "503"} <= set(ensure["responses"])
    assert "application/problem+json" in ensure["responses"]["503"]["content"]
    assert "Problem" in spec["components"]["schemas"]
    assert api.get("/api/docs").status_code == 200
    assert api.get("/api/health/live").json() == {"status": "ok"}


def test_health_names_each_ports_adapter_and_whether_it_answers(tmp_path: Path) -> None:
    from tests.stack import free_port

    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(data_dir=tmp_path / "data", registry=down, insecure_registries=down)
    with authorized(TestClient(create_app(build_services(settings)))) as client:
        health = client.get("/api/health").json()
    assert health["status"] == "degraded"
    assert {port: health[port]["kind"] for port in ("store", "builds", "contexts", "queue", "builder", "registry")} \
        == {"store": "sqlite", "builds": "sqlite", "contexts": "file", "queue": "sqlite", "builder": "buildah",
            "registry": "oci"}
    assert all(health[port]["ok"] for port in ("store", "builds", "contexts", "queue"))
    assert health["registry"]["ok"] is False and down in health["registry"]["error"]


def test_latest_of_a_name_whose_versions_are_all_archived_says_so(api: TestClient) -> None:
    register(api, "shelved", {"image": "python:3.11-slim"})
    assert api.post(f"{WS}/environments/shelved/versions/1/archive").status_code == 200
    body = assert_problem(api.get(f"{WS}/environments/shelved/versions/latest"), 404, "every version")
    assert "restore one or name a version" in body["detail"]
    assert_problem(api.get(f"{WS}/environments/never/versions/latest"), 404, "is not registered")
