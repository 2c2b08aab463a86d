"""The deployment routes through the FastAPI app over a real SQLite store and a fake registry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.bootstrap import Services, build_services
from shared.domain.scans import Deployment
from shared.settings import Settings
from tests.auth import authorized
from tests.fakes.registry import FakeRegistry

WS = "/api/workspaces/team"
CONDA = {"channels": ["conda-forge"], "dependencies": ["python=3.11", {"pip": ["scikit-learn"]}]}
USER_IMAGE = "reg:5000/team/app:1"
DIGEST_A, DIGEST_B, DIGEST_C = ("sha256:" + c * 64 for c in "abc")


@dataclass
class Api:
    client: TestClient
    services: Services
    registry: FakeRegistry

    def register(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(f"{WS}/environments/{name}/versions", json=document)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def built(self, name: str, version: str, digest: str) -> None:
        """Put the environment's image in the registry, as a finished build would."""
        record = self.services.environments.get(workspace="team", name=name, version=version)
        self.registry.push(self.services.images.target(record), digest)

    def put(self, name: str, body: dict[str, Any], expect: int) -> dict[str, Any]:
        response = self.client.put(f"{WS}/deployments/{name}", json=body)
        assert response.status_code == expect, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    registry = FakeRegistry()
    services = build_services(Settings(data_dir=tmp_path / "data", registry="reg:5000"), registry=registry)
    with authorized(TestClient(create_app(services))) as client:
        yield Api(client, services, registry)


def assert_problem(response: Any, status: int, *words: str, where: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:envhub:problem:")
    for word in words:
        assert word in body["detail"], body
    if where is not None:
        assert body.get("where") == where or where in body["detail"], body
    return body


def test_set_without_a_digest_records_the_current_image(api: Api) -> None:
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    api.built("train", "1", DIGEST_A)
    body = api.put("web", {"environment": "train:1", "endpoint": "scoring", "kind": "online"}, 201)
    assert body == {"workspace": "team", "name": "web", "environment": "train:1", "image_digest": DIGEST_A,
                    "endpoint": "scoring", "kind": "online", "needs_redeploy": False, "redeploy_reason": None,
                    "created_at": body["created_at"], "updated_at": body["created_at"]}
    assert api.client.get(f"{WS}/deployments/web").json() == body
    # The image moves on (a rebuild): the deployment keeps the digest it was set with until it is set again.
    api.built("train", "1", DIGEST_B)
    assert api.client.get(f"{WS}/deployments/web").json()["image_digest"] == DIGEST_A
    again = api.put("web", {"environment": "azureml:train:1"}, 200)
    assert again["image_digest"] == DIGEST_B and again["created_at"] == body["created_at"]
    assert again["updated_at"] > body["updated_at"] and again["kind"] == "online" and again["endpoint"] is None


def test_a_user_image_deployment_records_that_images_digest(api: Api) -> None:
    api.register("byo", {"image": USER_IMAGE})
    api.registry.push(USER_IMAGE, DIGEST_C)
    assert api.put("batch-job", {"environment": "byo:1", "kind": "batch"}, 201)["image_digest"] == DIGEST_C


def test_a_given_digest_is_kept_and_the_image_need_not_exist(api: Api) -> None:
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    api.built("train", "1", DIGEST_A)
    body = api.put("web", {"environment": "train:1", "image_digest": DIGEST_C, "kind": "batch"}, 201)
    assert body["image_digest"] == DIGEST_C and body["kind"] == "batch"
    api.registry.down |= {"reg:5000", "docker.io"}  # not asked at all
    assert api.put("web2", {"environment": "train:1", "image_digest": DIGEST_B}, 201)["image_digest"] == DIGEST_B


def test_latest_is_resolved_to_the_version_it_names(api: Api) -> None:
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    api.register("train", {"image": "python:3.12", "conda_file": CONDA})
    api.built("train", "2", DIGEST_B)
    body = api.put("web", {"environment": "train@latest"}, 201)
    assert body["environment"] == "train:2" and body["image_digest"] == DIGEST_B
    api.register("train", {"image": "python:3.13", "conda_file": CONDA})
    assert api.client.get(f"{WS}/deployments/web").json()["environment"] == "train:2"  # stored, not followed
    pinned = api.put("web", {"environment": "azureml:train@latest", "image_digest": DIGEST_C}, 200)
    assert pinned["environment"] == "train:3"


def test_a_missing_environment_is_a_404_problem(api: Api) -> None:
    assert_problem(api.client.put(f"{WS}/deployments/web", json={"environment": "nope:1"}), 404, "nope",
                   where="nope:1")
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    assert_problem(api.client.put(f"{WS}/deployments/web", json={"environment": "train:9",
                                                                  "image_digest": DIGEST_A}), 404, "'9'")
    assert_problem(api.client.get(f"{WS}/deployments/web"), 404, "no deployment 'web'")
    assert_problem(api.client.delete(f"{WS}/deployments/web"), 404, "no deployment 'web'")


def test_an_image_not_built_yet_is_a_409_problem(api: Api) -> None:
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    body = assert_problem(api.client.put(f"{WS}/deployments/web", json={"environment": "train:1"}), 409,
                          "image does not exist yet", "image_digest", where="image_digest")
    assert body["type"] == "urn:envhub:problem:image-not-built"
    assert_problem(api.client.get(f"{WS}/deployments/web"), 404)  # nothing was stored
    api.registry.down |= {"reg:5000", "docker.io"}
    assert_problem(api.client.put(f"{WS}/deployments/web", json={"environment": "train:1"}), 503)


@pytest.mark.parametrize(("name", "body", "where"), [
    ("web", {"environment": "train:1", "image_digest": "sha256:abc"}, "image_digest"),
    ("web", {"environment": "train:1", "image_digest": "sha256:" + "A" * 64}, "image_digest"),
    ("web", {"environment": "train:1", "image_digest": "md5:" + "a" * 64}, "image_digest"),
    ("web", {"environment": "train:1", "kind": "serverless"}, "kind"),
    ("web", {"environment": "train"}, "environment"),
    ("web", {"environment": "train@newest"}, "environment"),
    ("web", {"environment": ""}, "environment"),
    ("web", {}, "environment"),
    ("web", {"environment": "train:1", "endpoint": "has space"}, "endpoint"),
    ("web", {"environment": "train:1", "endpoint": ""}, "endpoint"),
    ("web", {"environment": "train:1", "imageDigest": DIGEST_A}, "imageDigest"),
    ("-web", {"environment": "train:1", "image_digest": DIGEST_A}, "name"),
    ("we$b", {"environment": "train:1", "image_digest": DIGEST_A}, "name"),
])
def test_bad_input_is_a_422_problem_naming_the_field(api: Api, name: str, body: dict[str, Any], where: str) -> None:
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    api.built("train", "1", DIGEST_A)
    problem = assert_problem(api.client.put(f"{WS}/deployments/{name}", json=body), 422)
    assert where in (problem.get("where") or "") or where in problem["detail"], problem
    assert_problem(api.client.get(f"{WS}/deployments/{name}"), 404)


def test_list_pages_by_name_and_filters_on_the_redeploy_flag(api: Api) -> None:
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    for name in ("e", "b", "d", "a", "c"):
        api.put(name, {"environment": "train:1", "image_digest": DIGEST_A}, 201)
    api.put("z", {"environment": "train:1", "image_digest": DIGEST_A}, 201)
    # The scan flags deployments through the store: two of them here.
    store = api.services.deployments.store
    for name in ("b", "d"):
        flagged = store.get("team", name)
        assert flagged is not None
        store.put(flagged.model_copy(update={"needs_redeploy": True, "redeploy_reason": "base moved"}))
    first = api.client.get(f"{WS}/deployments", params={"$top": 2}).json()
    assert [d["name"] for d in first["value"]] == ["a", "b"] and first["value"][1]["needs_redeploy"] is True
    assert first["value"][1]["redeploy_reason"] == "base moved"
    names, link, pages = [], f"{WS}/deployments?$top=2", 0
    while link:
        page = api.client.get(link).json()
        names += [d["name"] for d in page["value"]]
        link, pages = page["nextLink"], pages + 1
        if link:
            assert parse_qs(urlsplit(link).query)["$top"] == ["2"]
    assert names == ["a", "b", "c", "d", "e", "z"] and pages == 3
    flagged_page = api.client.get(f"{WS}/deployments", params={"needs_redeploy": "true", "$top": 1}).json()
    assert [d["name"] for d in flagged_page["value"]] == ["b"]
    assert "needs_redeploy=true" in flagged_page["nextLink"]
    second = api.client.get(flagged_page["nextLink"]).json()
    assert [d["name"] for d in second["value"]] == ["d"] and second["nextLink"] is None
    unflagged = api.client.get(f"{WS}/deployments", params={"needs_redeploy": "false"}).json()
    assert [d["name"] for d in unflagged["value"]] == ["a", "c", "e", "z"] and unflagged["nextLink"] is None
    assert api.client.get("/api/workspaces/other/deployments").json() == {"value": [], "nextLink": None}
    # Setting a flagged deployment again is redeploying it: the flag clears.
    assert api.put("b", {"environment": "train:1", "image_digest": DIGEST_B}, 200)["needs_redeploy"] is False


def test_bad_paging_is_a_422_problem(api: Api) -> None:
    assert_problem(api.client.get(f"{WS}/deployments", params={"$skiptoken": "a"}), 422, where="$skiptoken")
    assert_problem(api.client.get(f"{WS}/deployments", params={"$top": 0}), 422, "$top")
    assert_problem(api.client.get(f"{WS}/deployments", params={"needs_redeploy": "maybe"}), 422, "needs_redeploy")


def test_delete(api: Api) -> None:
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    api.put("web", {"environment": "train:1", "image_digest": DIGEST_A}, 201)
    api.put("other", {"environment": "train:1", "image_digest": DIGEST_A}, 201)
    response = api.client.delete(f"{WS}/deployments/web")
    assert response.status_code == 204 and response.content == b""
    assert_problem(api.client.get(f"{WS}/deployments/web"), 404)
    assert_problem(api.client.delete(f"{WS}/deployments/web"), 404)
    assert [d["name"] for d in api.client.get(f"{WS}/deployments").json()["value"]] == ["other"]
    assert api.put("web", {"environment": "train:1", "image_digest": DIGEST_A}, 201)["name"] == "web"


def test_the_service_keeps_created_at_with_a_fixed_clock(api: Api) -> None:
    api.register("train", {"image": "python:3.11", "conda_file": CONDA})
    service = api.services.deployments
    service.clock = lambda: datetime.fromisoformat("2026-03-01T00:00:00+00:00")
    first = service.set(workspace="team", name="web", environment="train:1", image_digest=DIGEST_A)
    service.clock = lambda: datetime.fromisoformat("2026-03-02T00:00:00+00:00")
    second = service.set(workspace="team", name="web", environment="train:1", image_digest=DIGEST_B)
    assert first.created and not second.created
    assert second.deployment == Deployment(
        workspace="team", name="web", environment_name="train", environment_version="1", image_digest=DIGEST_B,
        created_at=first.deployment.created_at, updated_at=datetime.fromisoformat("2026-03-02T00:00:00+00:00"))
    third = service.set(workspace="team", name="web", environment="train:1", image_digest=DIGEST_B)
    assert not third.created  # the same instant again: still a replace


def test_openapi_documents_the_routes_and_their_problems(api: Api) -> None:
    spec = api.client.get("/api/openapi.json").json()
    item = spec["paths"]["/api/workspaces/{workspace}/deployments/{name}"]
    assert {"put", "get", "delete"} <= set(item)
    assert {"200", "201", "404", "409", "422", "503"} <= set(item["put"]["responses"])
    assert "application/problem+json" in item["put"]["responses"]["409"]["content"]
    assert {"204", "404"} <= set(item["delete"]["responses"])
    listing = spec["paths"]["/api/workspaces/{workspace}/deployments"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"$top", "$skiptoken", "needs_redeploy"}
    assert set(spec["components"]["schemas"]["DeploymentIn"]["properties"]) == {
        "environment", "image_digest", "endpoint", "kind"}
