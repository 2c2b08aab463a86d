"""Authenticated test clients: an admin token for a TestClient's app, and the token of a running server."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from shared.bootstrap import Services
from shared.domain.access import Principal

SYSTEM = Principal(subject="tests", admin=True)


def admin_token(services: Services) -> str:
    """A new admin token in these services' token store."""
    secret, _ = services.access.issue(SYSTEM, workspace=None, role=None, admin=True, label="tests")
    return secret


def token_for(services: Services, workspace: str, role: str) -> str:
    """A new token with `role` in `workspace`."""
    secret, _ = services.access.issue(SYSTEM, workspace=workspace, role=role, label="tests")
    return secret


def authorized(client: TestClient) -> TestClient:
    """The same client, sending an admin bearer token created in its app's token store."""
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    client.headers["authorization"] = f"Bearer {admin_token(services)}"
    return client


def server_headers(data_dir: Path) -> dict[str, str]:
    """The Authorization header of the admin token a running `envhub serve` wrote into its data folder."""
    return {"authorization": f"Bearer {(data_dir / 'admin-token').read_text().strip()}"}
