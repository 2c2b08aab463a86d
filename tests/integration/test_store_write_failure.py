"""Store writes that fail mid-request (a locked SQLite file): a 503 problem, nothing half-written, one retry heals."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.adapters.sqlite_builds import SqliteBuildStore
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_queue import SqliteQueue
from shared.adapters.sqlite_store import SqliteStore
from shared.bootstrap import Services, build_services
from shared.domain.records import JobRecord
from shared.settings import Settings
from tests.auth import authorized
from tests.fakes.registry import FakeRegistry
from tests.integration.test_api_environments import SKLEARN, WS, assert_problem

BASE = SKLEARN["image"]


class Impatient(Database):
    """The real SQLite file, giving up on another writer's lock after 0.2 s instead of 30 (the same failure,
    sooner)."""

    def connection(self) -> sqlite3.Connection:
        db = super().connection()
        db.execute("PRAGMA busy_timeout = 200")
        return db


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another writer (a second connection, as another process or a backup would be) holds the write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


class LockedBeforeJobs(SqliteStore):
    """The store, with the lock taken by another writer just as a job is recorded: the anonymous environment
    is written, the job is not."""

    lock_jobs = False

    def insert_job(self, job: JobRecord) -> bool:
        if not self.lock_jobs:
            return super().insert_job(job)
        with locked(self.database.path):
            return super().insert_job(job)


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[tuple[TestClient, Services, Path]]:
    settings = Settings(data_dir=tmp_path / "data", registry="registry.test", worker=False)
    path = (settings.data_dir / "envhub.db").resolve()
    database = Impatient(path)
    registry = FakeRegistry()
    registry.push(BASE)
    services = build_services(settings, store=LockedBeforeJobs(database), builds=SqliteBuildStore(database),
                              queue=SqliteQueue(database, settings.build_queue), registry=registry)
    with authorized(TestClient(create_app(services), raise_server_exceptions=False)) as api:
        yield api, services, path


def assert_unavailable(response: Any) -> None:
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["type"].endswith("unavailable") and "Traceback" not in response.text


def stored(services: Services) -> list[tuple[str, str]]:
    """Every stored version as (name, version), duplicates kept: a doubled write would show twice."""
    return sorted((r.name, r.version) for r in services.environments.store.each_version())


def test_a_registration_while_the_store_is_locked_is_a_503_and_a_retry_gives_one_version(
        wired: tuple[TestClient, Services, Path]) -> None:
    api, services, path = wired
    url = f"{WS}/environments/e/versions"
    assert api.post(url, json=SKLEARN).status_code == 201
    with locked(path):
        assert_unavailable(api.post(url, json={**SKLEARN, "description": "two"}))
        assert_unavailable(api.put(f"{url}/7", json={**SKLEARN, "description": "seven"}))
    # Nothing half-written: no version 2 nor 7, latest is still 1, history has no gap and no double.
    assert stored(services) == [("e", "1")]
    assert api.get(f"{url}/latest").json()["version"] == "1"
    assert api.get(f"{url}/2").status_code == 404
    # The retry after the fault heals gives exactly one new version each.
    assert api.post(url, json={**SKLEARN, "description": "two"}).json()["version"] == "2"
    assert api.put(f"{url}/7", json={**SKLEARN, "description": "seven"}).status_code == 201
    assert api.put(f"{url}/7", json={**SKLEARN, "description": "seven"}).status_code == 200  # a repeat: no-op
    assert api.post(url, json={**SKLEARN, "description": "eight"}).json()["version"] == "8"
    assert stored(services) == [("e", "1"), ("e", "2"), ("e", "7"), ("e", "8")]
    assert [e["version"] for e in api.get(url).json()["value"]] == ["8", "7", "2", "1"]


def test_a_job_whose_record_fails_after_its_environment_is_a_503_and_a_retry_records_it_once(
        wired: tuple[TestClient, Services, Path]) -> None:
    api, services, _ = wired
    job = {"name": "train-1", "command": "python train.py", "environment": {**SKLEARN, "description": "inline"}}
    store = services.environments.store
    assert isinstance(store, LockedBeforeJobs)
    store.lock_jobs = True
    assert_unavailable(api.post(f"{WS}/jobs", json=job))
    assert api.get(f"{WS}/jobs/train-1").status_code == 404
    (anonymous,) = stored(services)  # the environment was written, and is reused by the retry
    store.lock_jobs = False
    response = api.post(f"{WS}/jobs", json=job)
    assert response.status_code == 201, response.text
    assert (response.json()["environment"]["name"], response.json()["environment"]["version"]) == anonymous
    assert stored(services) == [anonymous]
    assert api.post(f"{WS}/jobs", json=job).status_code == 409  # the same job again is not a second job


def test_a_build_request_while_the_store_is_locked_is_a_503_and_queues_nothing(
        wired: tuple[TestClient, Services, Path]) -> None:
    api, services, path = wired
    record = api.post(f"{WS}/environments/e/versions", json=SKLEARN).json()
    queue = services.ports["queue"].adapter
    assert isinstance(queue, SqliteQueue)
    with locked(path):
        assert_unavailable(api.post(f"{WS}/environments/e/versions/1/image"))
    assert queue.depth() == 0 and services.images.builds.count_for_hash(record["hash"]) == 0
    first = api.post(f"{WS}/environments/e/versions/1/image").json()
    again = api.post(f"{WS}/environments/e/versions/1/image").json()
    assert first["build_id"] == again["build_id"]  # the repeat joins the build
    assert queue.depth() == 1 and services.images.builds.count_for_hash(record["hash"]) == 1
