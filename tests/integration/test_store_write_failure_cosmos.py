"""Cosmos DB writes dropped mid-registration: a 201 or a 503 problem, nothing doubled, a retry gives exactly one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.bootstrap import build_services
from shared.settings import Settings
from tests.auth import authorized
from tests.cosmos_proxy import Faults, dropping_proxy
from tests.emulators import cosmos_or_skip
from tests.integration.test_api_environments import SKLEARN, WS, assert_problem

pytestmark = pytest.mark.integration
URL = f"{WS}/environments/e/versions"
WHEN = ["before", "after"]


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[str, str, Faults]]:
    """The emulator behind the dropping proxy: (proxy URL, key, faults)."""
    with ExitStack() as stack:
        emulator = cosmos_or_skip(stack)
        url, faults = stack.enter_context(dropping_proxy(emulator.endpoint))
        yield url, emulator.key, faults


@pytest.fixture
def api(proxied: tuple[str, str, Faults], tmp_path: Path) -> Iterator[TestClient]:
    url, key, faults = proxied
    faults.arm()
    settings = Settings(data_dir=tmp_path / "data", store="cosmos", cosmos_endpoint=url, cosmos_key=key,
                        cosmos_create=True, cosmos_database=f"drops-{uuid.uuid4().hex[:8]}", worker=False)
    with authorized(TestClient(create_app(build_services(settings)), raise_server_exceptions=False)) as client:
        yield client
    faults.arm()


def answered_or_unavailable(response: Any) -> bool:
    """True for a success; a failure must be a 503 problem with Retry-After (never a 500)."""
    if response.status_code < 300:
        return True
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    return False


def history(api: TestClient) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = api.get(URL, params={"$top": 100}).json()["value"]
    numbers = [int(v["version"]) for v in versions]
    assert numbers == sorted(set(numbers), reverse=True), "no version twice, newest first"
    assert api.get(f"{URL}/latest").json()["version"] == versions[0]["version"], "latest is the newest version"
    return versions


def described(versions: list[dict[str, Any]], text: str) -> int:
    return sum(v["definition"]["description"] == text for v in versions)


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("write", [1, 2, 3])  # the head's counter, the version, the head's latest
def test_a_next_version_with_a_dropped_write(api: TestClient, proxied: tuple[str, str, Faults], write: int,
                                             when: str) -> None:
    faults = proxied[2]
    assert api.post(URL, json=SKLEARN).status_code == 201
    faults.arm(write, when=when, containers=("environments",))
    done = answered_or_unavailable(api.post(URL, json={**SKLEARN, "description": "two"}))
    assert faults.dropped, "the drill dropped a write"
    faults.arm()
    versions = history(api)
    # A 503 left nothing behind for the retry to double; a counter moved by a lost write is a gap, by design.
    assert described(versions, "two") == (1 if done else 0)
    if not done:
        assert answered_or_unavailable(api.post(URL, json={**SKLEARN, "description": "two"}))
    assert described(history(api), "two") == 1


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("write", [1, 2])  # the version, the head
def test_an_explicit_version_with_a_dropped_write(api: TestClient, proxied: tuple[str, str, Faults], write: int,
                                                  when: str) -> None:
    faults = proxied[2]
    assert api.post(URL, json=SKLEARN).status_code == 201
    faults.arm(write, when=when, containers=("environments",))
    done = answered_or_unavailable(api.put(f"{URL}/7", json={**SKLEARN, "description": "seven"}))
    assert faults.dropped, "the drill dropped a write"
    faults.arm()
    if not done:
        assert api.put(f"{URL}/7", json={**SKLEARN, "description": "seven"}).status_code in (200, 201)
    assert api.put(f"{URL}/7", json={**SKLEARN, "description": "seven"}).status_code == 200  # settled: a no-op
    assert [v["version"] for v in history(api)] == ["7", "1"]


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("write", [1, 2, 3])  # the anonymous version, its head, the job
def test_a_job_submission_with_a_dropped_write(api: TestClient, proxied: tuple[str, str, Faults], write: int,
                                               when: str) -> None:
    faults = proxied[2]
    job = {"name": f"job-{write}-{when}", "command": "python train.py", "environment": SKLEARN}
    faults.arm(write, when=when, containers=("environments", "jobs"))
    done = answered_or_unavailable(api.post(f"{WS}/jobs", json=job))
    assert faults.dropped, "the drill dropped a write"
    faults.arm()
    if not done:
        retried = api.post(f"{WS}/jobs", json=job)
        assert retried.status_code == 201, retried.text
    recorded = api.get(f"{WS}/jobs/{job['name']}").json()
    env = recorded["environment"]
    anonymous = api.get(f"{WS}/environments/{env['name']}/versions", params={"$top": 100}).json()["value"]
    assert [v["version"] for v in anonymous] == [env["version"]]  # one anonymous version, the job's
    assert api.post(f"{WS}/jobs", json=job).status_code == 409  # the job again is not a second job
