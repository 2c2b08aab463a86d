"""Who may do what, through the HTTP API: tokens, roles per workspace, 404 across workspaces, the audit log."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.bootstrap import Services, build_services
from shared.domain.access import Role
from shared.settings import Settings
from tests.auth import admin_token, token_for
from tests.fakes.registry import FakeRegistry
from tests.integration.test_api_environments import SKLEARN, assert_problem

A, B = "/api/workspaces/alpha", "/api/workspaces/beta"


class Api:
    """One app, and a client per caller."""

    def __init__(self, services: Services, client: TestClient) -> None:
        self.services = services
        self.client = client

    def as_(self, token: str | None) -> dict[str, str]:
        return {} if token is None else {"authorization": f"Bearer {token}"}

    def call(self, method: str, url: str, token: str | None, **kwargs: Any) -> Any:
        return self.client.request(method, url, headers=self.as_(token), **kwargs)

    def token(self, workspace: str, role: str) -> str:
        return token_for(self.services, workspace, role)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    services = build_services(Settings(data_dir=tmp_path / "data", registry="reg:5000"), registry=FakeRegistry())
    with TestClient(create_app(services)) as client:
        yield Api(services, client)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "alpha" if m.group(0) == "{workspace}" else "x1", path)


def test_every_route_but_health_needs_a_token(api: Api) -> None:
    spec = api.client.get("/api/openapi.json").json()
    checked = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            response = api.call(method.upper(), _concrete(path), None, json={})
            if path in ("/api/health", "/api/health/live"):
                assert response.status_code in (200, 503), path
                continue
            assert response.headers["www-authenticate"].startswith("Bearer"), path
            checked += 1
            if path.startswith("/api/subscriptions/"):  # Azure ML's ARM routes: ARM's error shape
                assert response.status_code == 401 and response.json()["error"]["code"] == "AuthenticationFailed"
                continue
            body = assert_problem(response, 401, "bearer token")
            assert body["type"] == "urn:envhub:problem:unauthenticated"
    assert checked >= 35  # every route of the API, read from its own description
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_unknown_malformed_and_revoked_tokens_are_401(api: Api) -> None:
    owner = api.token("alpha", "owner")
    assert api.call("GET", f"{A}/environments", owner).status_code == 200
    for bad in ("nope", owner + "x", owner[:-1], "envhub_" + "A" * 43, ""):
        assert api.call("GET", f"{A}/environments", bad).status_code == 401
    token_id = api.call("GET", "/api/tokens", owner, params={"workspace": "alpha"}).json()["value"][0]["id"]
    assert api.call("POST", f"/api/tokens/{token_id}/revoke", owner).json()["revoked_at"]
    assert_problem(api.call("GET", f"{A}/environments", owner), 401, "revoked")


def test_an_envhub_token_ignores_a_forged_easy_auth_header(api: Api) -> None:
    forged = base64.b64encode(json.dumps({"claims": [{"typ": "roles", "val": "envhub.admin"}]}).encode()).decode()
    response = api.client.get(f"{A}/environments", headers={"x-ms-client-principal": forged})
    assert response.status_code == 401


def test_roles_reader_contributor_owner(api: Api) -> None:
    reader, contributor, owner = (api.token("alpha", r) for r in ("reader", "contributor", "owner"))
    assert_problem(api.call("POST", f"{A}/environments/e/versions", reader, json=SKLEARN), 403, "contributor")
    assert api.call("POST", f"{A}/environments/e/versions", contributor, json=SKLEARN).status_code == 201
    assert api.call("GET", f"{A}/environments/e/versions/1", reader).status_code == 200
    assert_problem(api.call("GET", f"{A}/audit", contributor), 403, "owner")
    assert api.call("GET", f"{A}/audit", owner).status_code == 200
    assert_problem(api.call("POST", "/api/patch-scans", owner), 403, "admin")
    assert api.call("POST", "/api/hash", reader, json=SKLEARN).status_code == 200
    assert api.call("GET", "/api/curated-environments", reader).status_code == 200


def test_another_workspace_is_invisible_not_forbidden(api: Api) -> None:
    alpha = api.token("alpha", "owner")
    api.call("POST", f"{A}/environments/secret/versions", alpha, json=SKLEARN)
    beta = api.token("beta", "owner")
    exists = api.call("GET", f"{A}/environments/secret/versions/1", beta)
    missing = api.call("GET", f"{A}/environments/nothing/versions/1", beta)
    nobody = api.call("GET", "/api/workspaces/nowhere/environments", beta)
    assert exists.status_code == missing.status_code == nobody.status_code == 404
    assert exists.json()["detail"] == missing.json()["detail"]  # the same words: nothing tells them apart
    for method, path in (("POST", "/environments/x/versions"), ("GET", "/audit"), ("GET", "/jobs/j"),
                         ("GET", "/deployments"), ("GET", "/findings"), ("POST", "/builds/b/cancel")):
        assert api.call(method, f"{A}{path}", beta, json=SKLEARN).status_code == 404, path


def test_a_build_is_seen_only_from_workspaces_with_its_hash(api: Api) -> None:
    alpha, beta = api.token("alpha", "contributor"), api.token("beta", "contributor")
    api.call("POST", f"{A}/environments/e/versions", alpha, json=SKLEARN)
    started = api.call("POST", f"{A}/environments/e/versions/1/image", alpha)
    assert started.status_code == 202, started.text
    build_id = started.json()["build_id"]
    assert api.call("GET", f"{A}/builds/{build_id}", alpha).status_code == 200
    assert api.call("GET", f"{A}/builds/{build_id}/log", alpha).status_code == 200
    for path in (f"/builds/{build_id}", f"/builds/{build_id}/log"):
        assert_problem(api.call("GET", f"{B}{path}", beta), 404, build_id)
    assert api.call("POST", f"{B}/builds/{build_id}/cancel", beta).status_code == 404
    assert api.call("GET", f"{A}/builds/{build_id}", alpha).json()["status"] != "cancelled"
    # beta registers the same definition: the cache is shared by hash, and so is the build
    api.call("POST", f"{B}/environments/other/versions", beta, json=SKLEARN)
    joined = api.call("POST", f"{B}/environments/other/versions/1/image", beta)
    assert joined.json()["build_id"] == build_id
    assert api.call("GET", f"{B}/builds/{build_id}", beta).status_code == 200


def test_owners_issue_tokens_of_their_workspace_only(api: Api) -> None:
    owner, contributor = api.token("alpha", "owner"), api.token("alpha", "contributor")
    issued = api.call("POST", "/api/tokens", owner, json={"workspace": "alpha", "role": "reader", "label": "ci"})
    assert issued.status_code == 201 and issued.json()["token"].startswith("envhub_")
    new = issued.json()["token"]
    assert api.call("GET", f"{A}/environments", new).status_code == 200
    listed = api.call("GET", "/api/tokens", owner, params={"workspace": "alpha"}).json()["value"]
    assert issued.json()["id"] in [t["id"] for t in listed] and all("token" not in t for t in listed)
    assert api.call("POST", "/api/tokens", owner, json={"workspace": "beta", "role": "reader"}).status_code == 404
    assert api.call("POST", "/api/tokens", owner, json={"admin": True}).status_code == 403
    assert api.call("POST", "/api/tokens", owner, json={"workspace": "*", "role": "reader"}).status_code == 403
    assert api.call("POST", "/api/tokens", contributor, json={"workspace": "alpha"}).status_code == 403
    assert api.call("GET", "/api/tokens", owner).status_code == 403  # every token: admins only
    assert_problem(api.call("POST", "/api/tokens", owner, json={"workspace": "alpha", "role": "boss"}), 422, "role")
    other = api.token("beta", "reader")
    other_id = api.call("GET", "/api/tokens", admin_token(api.services)).json()["value"][-1]["id"]
    assert api.call("POST", f"/api/tokens/{other_id}/revoke", owner).status_code == 404
    assert api.call("GET", f"{B}/environments", other).status_code == 200


def test_every_change_is_audited_with_who_and_request_id(api: Api) -> None:
    owner, contributor = api.token("alpha", "owner"), api.token("alpha", "contributor")
    registered = api.client.post(f"{A}/environments/e/versions", json=SKLEARN,
                                 headers={**api.as_(contributor), "x-request-id": "req-42"})
    assert registered.headers["x-request-id"] == "req-42"
    api.call("POST", f"{A}/environments/e/versions/1/archive", contributor)
    api.call("POST", f"{A}/environments/e/versions", api.token("alpha", "reader"), json=SKLEARN)  # refused: 403
    api.call("GET", f"{A}/environments", contributor)  # a read: not audited
    api.call("POST", "/api/hash", contributor, json=SKLEARN)  # nothing stored: not audited
    entries = api.call("GET", f"{A}/audit", owner).json()["value"]
    assert [e["action"] for e in entries] == ["POST /api/workspaces/alpha/environments/e/versions/1/archive",
                                              "POST /api/workspaces/alpha/environments/e/versions"]
    contributor_id = next(t.id for t in api.services.access.tokens.list_tokens("alpha") if t.role == Role.CONTRIBUTOR)
    assert {e["who"] for e in entries} == {f"token:{contributor_id}"}
    assert entries[1]["request_id"] == "req-42" and entries[1]["status"] == 201
    assert api.call("GET", f"{B}/audit", api.token("beta", "owner")).json()["value"] == []
    assert api.call("GET", "/api/audit", admin_token(api.services)).status_code == 200


def test_a_fresh_request_id_when_none_or_a_bad_one_is_sent(api: Api) -> None:
    token = api.token("alpha", "reader")
    first = api.call("GET", f"{A}/environments", token).headers["x-request-id"]
    odd = api.client.get(f"{A}/environments", headers={**api.as_(token), "x-request-id": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    assert api.client.get("/api/health/live").headers["x-request-id"]
