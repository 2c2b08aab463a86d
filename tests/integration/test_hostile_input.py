"""Hostile input through the HTTP API and the CLI: every refusal a quick 4xx problem, one log line, nothing stored."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from functions.http_api.limits import BodyLimits
from shared.adapters.azurite import Azurite
from shared.bootstrap import build_services
from shared.services.contexts import ContextService, Limits
from shared.settings import Settings
from tests.auth import authorized
from tests.contract.storage_backends import CONTEXT_STORES, azurite_running, make_context_store
from tests.integration.test_api_environments import SKLEARN, WS, assert_problem, register
from tests.unit.test_limits import bomb_yaml, many_files

# CPU seconds of this process: "well under a second". CPU time, not wall time, so that a CI machine busy with
# other processes cannot fail a refusal that did little work, while one that parses a 34 MB body still fails.
FAST = 1.0


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def hostile(data: Path) -> Iterator[TestClient]:
    """The API as wired in production: the body limits around the app."""
    app = create_app(build_services(Settings(data_dir=data, max_context_files=1000)))
    app.add_middleware(BodyLimits)
    with authorized(TestClient(app, raise_server_exceptions=False)) as client:
        yield client


def stored_files(data: Path) -> list[str]:
    root = data / "contexts"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.parts[-2] != "tmp")


def timed(call: Any) -> Any:
    started = time.process_time()  # every thread of the process: the app runs in the test client's thread
    response = call()
    assert time.process_time() - started < FAST
    return response


def refusal_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) <= 1, [r.getMessage() for r in records]
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in records)


def test_a_large_body_is_refused_by_its_length(hostile: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    body = b'{"image": "busybox", "description": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    response = timed(lambda: hostile.post(f"{WS}/environments/big/versions", content=body,
                                          headers={"content-type": "application/json"}))
    assert_problem(response, 413, "limit is 1048576")
    refusal_logged_once(caplog)
    assert hostile.get(f"{WS}/environments").json()["value"] == []


def test_a_large_body_without_a_length_is_counted(hostile: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"image": "busybox", "description": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = timed(lambda: hostile.post(f"{WS}/environments/big/versions", content=chunks(),
                                          headers={"content-type": "application/json"}))
    assert_problem(response, 413, "exceeds the limit")
    assert hostile.get(f"{WS}/environments").json()["value"] == []


@pytest.mark.parametrize("depth", [101, 400, 900, 1000, 100_000])
def test_deep_json_is_a_problem_not_a_500(hostile: TestClient, caplog: pytest.LogCaptureFixture, depth: int) -> None:
    body = b'{"image": "busybox", "inference_config": {"x": ' + b"[" * depth + b"]" * depth + b"}}"
    response = timed(lambda: hostile.post(f"{WS}/environments/deep/versions", content=body,
                                          headers={"content-type": "application/json"}))
    assert_problem(response, 422, "nests deeper than 100")
    refusal_logged_once(caplog)


@pytest.mark.parametrize("route", ["/environments/deep/versions", "/jobs"])
def test_json_within_the_scan_but_past_the_definition_depth(hostile: TestClient, route: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    doc: Any = {"image": "busybox", "inference_config": {"x": []}}
    inner = doc["inference_config"]["x"]
    for _ in range(80):
        inner.append([])
        inner = inner[0]
    body = doc if route != "/jobs" else {"name": "j", "environment": doc}
    response = timed(lambda: hostile.post(f"{WS}{route}", json=body))
    assert_problem(response, 422, "deeper than 64")
    refusal_logged_once(caplog)


def test_too_many_tags_and_long_strings(hostile: TestClient) -> None:
    tags = {f"t{i}": "v" for i in range(101)}
    body = assert_problem(hostile.post(f"{WS}/environments/t/versions", json={**SKLEARN, "tags": tags}), 422,
                          "'tags' has 101 entries")
    assert body["where"] == "tags"
    assert_problem(hostile.post(f"{WS}/environments/t/versions",
                                json={**SKLEARN, "inference_config": {"k": "x" * 70_000}}), 422, "characters")
    assert hostile.get(f"{WS}/environments").json()["value"] == []


def test_many_nodes_are_refused(hostile: TestClient) -> None:
    body = {**SKLEARN, "inference_config": {"items": list(range(100_001))}}
    assert_problem(timed(lambda: hostile.post(f"{WS}/environments/n/versions", json=body)), 422, "more than 100000")


def test_a_lone_surrogate_is_quoted_back_not_a_500(hostile: TestClient) -> None:
    body = b'{"name": "\\udcff", "image": "python:3.11"}'  # valid JSON, not encodable as UTF-8 once decoded
    response = hostile.post(f"{WS}/environments/x/versions", content=body, headers={"content-type": "application/json"})
    assert_problem(response, 422, "\\udcff")


def test_versions_are_canonical(hostile: TestClient) -> None:
    register(hostile, "v", {**SKLEARN, "version": "1"})
    for response in (hostile.post(f"{WS}/environments/v/versions", json={**SKLEARN, "version": "01"}),
                     hostile.put(f"{WS}/environments/v/versions/01", json=SKLEARN)):
        assert assert_problem(response, 422, "leading zero")["where"] == "version"
    assert [e["version"] for e in hostile.get(f"{WS}/environments/v/versions").json()["value"]] == ["1"]


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def upload(api: TestClient, body: bytes) -> Any:
    return api.post(f"{WS}/contexts", content=body, headers={"content-type": "application/gzip"})


def test_half_an_archive_is_refused_and_leaves_nothing(hostile: TestClient, data: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    whole = tar_gz({"Dockerfile": b"FROM busybox\n", "data.bin": bytes(range(256)) * 8192})
    assert_problem(timed(lambda: upload(hostile, whole[: len(whole) // 2])), 400, "not a complete")
    refusal_logged_once(caplog)
    assert stored_files(data) == []
    assert upload(hostile, whole).status_code == 201  # the whole one is fine, and stored
    assert any(name.startswith("manifests/") for name in stored_files(data))


def test_a_refused_upload_leaves_no_blobs(hostile: TestClient, data: Path) -> None:
    archive = tar_gz({"Dockerfile": b"FROM busybox\n", "bad": b"x"} | {"../out": b"y"})
    assert_problem(upload(hostile, archive), 400)
    assert stored_files(data) == []


def test_too_many_files_are_refused_early(hostile: TestClient, data: Path) -> None:
    archive = many_files(100_000)
    assert_problem(timed(lambda: upload(hostile, archive)), 413, "more than 1000 files")
    assert stored_files(data) == []


def test_the_cli_refuses_an_alias_bomb_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_text(bomb_yaml())
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "cli.main", "hash", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert time.perf_counter() - started < 15  # interpreter start-up included
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "aliases counted as expanded" in result.stderr


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with azurite_running() as emulator:
        yield emulator


@pytest.mark.parametrize("kind", CONTEXT_STORES)
def test_every_store_deletes_lists_and_collects(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    backend = make_context_store(kind, tmp_path, request)
    store = backend.store
    service = ContextService(store=store, limits=Limits(max_expanded_bytes=1 << 20, max_files=10))
    kept = service.upload(io.BytesIO(tar_gz({"Dockerfile": b"FROM busybox\n"})))
    orphan, _ = store.write_blob([b"orphan"])
    listed = dict(store.blobs())
    assert set(listed) == {orphan, kept.files[0].sha256}
    now = datetime.now(UTC)
    assert all(abs(when - now) < timedelta(minutes=5) for when in listed.values())
    assert service.collect_garbage(timedelta(hours=1)) == 0  # young
    assert service.collect_garbage(timedelta(0), now=now + timedelta(minutes=10)) == 1
    assert not store.has_blob(orphan) and store.has_blob(kept.files[0].sha256)
    assert service.get(kept.digest) is not None
    store.delete_blob(orphan)  # gone already: no error
    store.delete_blob("not-a-sha")
    broken = tar_gz({"Dockerfile": b"FROM busybox\n", "more": b"x" * 100_000})
    with pytest.raises(Exception, match="not a complete"):
        service.upload(io.BytesIO(broken[: len(broken) // 2]))
    assert backend.stored() == sorted([f"blobs/{kept.files[0].sha256}" if kind != "file" else
                                       f"blobs/{kept.files[0].sha256[:2]}/{kept.files[0].sha256}",
                                       f"manifests/{kept.digest.removeprefix('sha256:')}.json"])
