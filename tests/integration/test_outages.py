"""Backends of the Azure home going away mid-service: each request answers 503 problem+json with Retry-After,
never a 500, and /api/health says which port is down."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.bootstrap import build_services
from shared.settings import Settings
from tests.auth import authorized
from tests.emulators import azurite_or_skip, cosmos_or_skip

pytestmark = pytest.mark.integration
WS = "/api/workspaces/w"
DEFINITION = {"image": "python:3.11", "conda_file": {"dependencies": ["python=3.11"]}}


def settled_health(api: TestClient, done: Callable[[dict[str, Any]], bool], within: float = 15) -> dict[str, Any]:
    """The health report once `done` holds: reports are refreshed in the background, at most a second apart."""
    deadline = time.monotonic() + within
    while True:
        health: dict[str, Any] = api.get("/api/health").json()
        if done(health) or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


def test_cosmos_and_storage_outages_are_503s(tmp_path: Path) -> None:
    with ExitStack() as stack:
        cosmos = stack.enter_context(ExitStack())
        emulator = cosmos_or_skip(cosmos)
        storage = stack.enter_context(ExitStack())
        azurite = azurite_or_skip(storage)
        settings = Settings(data_dir=tmp_path / "data", registry="reg.test:5000", store="cosmos",
                            cosmos_endpoint=emulator.endpoint, cosmos_key=emulator.key, cosmos_create=True,
                            cosmos_database=f"outage-{uuid.uuid4().hex[:8]}", contexts="blob", queue="storage",
                            storage_connection_string=azurite.connection_string, storage_create=True)
        api = stack.enter_context(authorized(TestClient(create_app(build_services(settings)))))
        assert api.post(f"{WS}/environments/e/versions", json=DEFINITION).status_code == 201

        storage.close()  # Azurite goes away: uploads and health say so
        upload = api.post(f"{WS}/contexts", content=b"\x1f\x8b not really", headers={
            "content-type": "application/gzip"})
        assert upload.status_code in (400, 503)  # a broken archive may be refused before any blob is written
        health = settled_health(api, lambda h: not h["contexts"]["ok"])
        assert health["status"] == "degraded" and not health["contexts"]["ok"] and not health["queue"]["ok"]
        assert health["store"]["ok"]

        cosmos.close()  # Cosmos DB goes away: reads and writes are 503s with Retry-After
        for response in (api.get(f"{WS}/environments/e/versions/1"),
                         api.post(f"{WS}/environments/e/versions", json=DEFINITION),
                         api.get(f"{WS}/environments")):
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["Retry-After"]) > 0
            body = response.json()
            assert body["type"].endswith("store-unavailable") and "Cosmos DB did not answer" in body["detail"]
        assert not settled_health(api, lambda h: not h["store"]["ok"])["store"]["ok"]
