"""Entra ID principals from App Service Authentication's header: app roles and mapped groups become grants."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from functions.http_api.identity import entra_principal
from shared.bootstrap import build_services
from shared.domain.access import Role
from shared.domain.errors import Unauthenticated
from shared.settings import Settings
from tests.fakes.registry import FakeRegistry

SKLEARN = {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1"}


def header(*claims: tuple[str, str], role_typ: str = "roles", name_typ: str = "name") -> str:
    """The header as App Service sends it: base64 of its JSON."""
    doc = {"auth_typ": "aad", "name_typ": name_typ, "role_typ": role_typ,
           "claims": [{"typ": t, "val": v} for t, v in claims]}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_app_roles_and_groups_become_grants() -> None:
    principal = entra_principal(header(("name", "ada@contoso.example"), ("roles", "envhub.contributor@alpha"),
                                       ("roles", "envhub.reader@*"), ("roles", "Something.Else"),
                                       ("groups", "g-owners"), ("groups", "g-unknown")),
                                {"g-owners": "owner@beta"})
    assert principal.subject == "entra:ada@contoso.example" and not principal.admin
    assert principal.role_in("alpha") == Role.CONTRIBUTOR and principal.role_in("beta") == Role.OWNER
    assert principal.role_in("gamma") == Role.READER  # envhub.reader@* reads every workspace


def test_admin_from_an_app_role_or_a_group_and_the_role_claim_type_is_honoured() -> None:
    uri = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    assert entra_principal(header((uri, "envhub.admin"), role_typ=uri), {}).admin
    assert entra_principal(header(("groups", "g-admins")), {"g-admins": "admin"}).admin
    nothing = entra_principal(header(("roles", "envhub.boss@alpha"), ("roles", "envhub.owner")), {})
    assert not nothing.admin and nothing.role_in("alpha") is None  # unknown roles and no workspace grant nothing


@pytest.mark.parametrize("bad", [None, "", "not base64!", base64.b64encode(b"[1, 2]").decode(),
                                 base64.b64encode(b'{"claims": [{"typ": 1}]}').decode()])
def test_a_missing_or_malformed_header_is_unauthenticated(bad: str | None) -> None:
    with pytest.raises(Unauthenticated):
        entra_principal(bad, {})


def test_in_entra_mode_the_header_decides_and_bearer_tokens_do_not(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, registry="reg:5000", auth="entra", entra_groups={"g1": "owner@alpha"})
    services = build_services(settings, registry=FakeRegistry())
    with TestClient(create_app(services)) as client:
        contributor = {"x-ms-client-principal": header(("roles", "envhub.contributor@alpha"))}
        assert client.post("/api/workspaces/alpha/environments/e/versions", json=SKLEARN,
                           headers=contributor).status_code == 201
        assert client.get("/api/workspaces/beta/environments", headers=contributor).status_code == 404
        assert client.get("/api/workspaces/alpha/environments").status_code == 401
        owner = {"x-ms-client-principal": header(("groups", "g1"), ("preferred_username", "bo"),
                                                 name_typ="preferred_username")}
        audit = client.get("/api/workspaces/alpha/audit", headers=owner).json()["value"]
        assert [e["who"] for e in audit] == ["entra:entra"]  # the contributor's header named nobody
        issued = client.post("/api/tokens", json={"workspace": "alpha"}, headers=owner)
        assert issued.status_code == 409 and "ENVHUB_AUTH" in issued.json()["detail"]
