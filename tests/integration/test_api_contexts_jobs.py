"""Build-context uploads (path tricks, links, size) and job submissions through the HTTP API."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.bootstrap import build_services
from shared.settings import Settings
from tests.auth import authorized
from tests.integration.test_api_environments import SKLEARN, WS, assert_problem, register


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, None if data is None else io.BytesIO(data))
    return buffer.getvalue()


def member(name: str, data: bytes | None = b"", kind: bytes = tarfile.REGTYPE, link: str = "",
           mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info, data


def upload(api: TestClient, body: bytes, media: str = "application/gzip") -> Any:
    return api.post(f"{WS}/contexts", content=body, headers={"content-type": media})


GOOD = [member("Dockerfile", b"FROM busybox\nCOPY run.sh /\n"), member("run.sh", b"#!/bin/sh\n", mode=0o755)]


def test_upload_then_register_a_build(api: TestClient) -> None:
    stored = upload(api, tar_gz(GOOD))
    assert stored.status_code == 201, stored.text
    digest = stored.json()["digest"]
    assert digest.startswith("sha256:") and stored.json()["files"] == 2
    body = register(api, "built", {"build": {"context": digest}})
    assert body["kind"] == "docker_build" and body["base_images"] == ["busybox"]
    assert upload(api, tar_gz(GOOD)).json()["digest"] == digest  # content-addressed: same files, same digest


def test_executable_bit_is_part_of_the_context(api: TestClient) -> None:
    plain = [GOOD[0], member("run.sh", b"#!/bin/sh\n", mode=0o644)]
    a = upload(api, tar_gz(GOOD)).json()["digest"]
    b = upload(api, tar_gz(plain)).json()["digest"]
    assert a != b
    hash_a = register(api, "x", {"build": {"context": a}})["hash"]
    assert hash_a != register(api, "y", {"build": {"context": b}})["hash"]


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([*GOOD, member("../escape", b"x")], ("leaves the context",)),
        ([*GOOD, member("/etc/passwd", b"x")], ("not a relative",)),
        ([*GOOD, member("a/../../b", b"x")], ("leaves the context",)),
        ([*GOOD, member("link", None, tarfile.SYMTYPE, "/etc/passwd")], ("symbolic link",)),
        ([*GOOD, member("hard", None, tarfile.LNKTYPE, "Dockerfile")], ("hard link",)),
        ([*GOOD, member("dev", None, tarfile.CHRTYPE)], ("special file",)),
        ([*GOOD, member("Dockerfile", b"FROM x\n")], ("twice",)),
        ([], ("no files",)),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_is_stored(
    api: TestClient, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], words: tuple[str, ...]
) -> None:
    assert_problem(upload(api, tar_gz(members)), 400, *words)
    manifests = list((tmp_path / "data" / "contexts" / "manifests").iterdir())
    assert manifests == []


def test_not_an_archive_and_wrong_media_type(api: TestClient) -> None:
    assert_problem(upload(api, b"plain text, not gzip"), 400, "tar.gz")
    assert_problem(upload(api, tar_gz(GOOD), "text/plain"), 400, "application/gzip")


def test_oversized_upload_is_413(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", max_upload_bytes=1000, max_context_bytes=5000)
    with authorized(TestClient(create_app(build_services(settings)))) as api:
        big = tar_gz([*GOOD, member("blob", bytes(range(256)) * 4000)])
        assert_problem(upload(api, big), 413, "limit")
        bomb = tar_gz([*GOOD, member("zeros", b"\0" * 100_000)])
        assert len(bomb) < 1000
        assert_problem(upload(api, bomb), 413, "expands")


def test_dockerfile_must_be_in_the_context(api: TestClient) -> None:
    digest = upload(api, tar_gz(GOOD)).json()["digest"]
    response = api.post(f"{WS}/environments/e/versions",
                        json={"build": {"context": digest, "dockerfile_path": "docker/Dockerfile"}})
    assert_problem(response, 422, "docker/Dockerfile", "not in the build context")
    no_from = upload(api, tar_gz([member("Dockerfile", b"RUN echo\n")])).json()["digest"]
    assert_problem(api.post(f"{WS}/environments/e/versions", json={"build": {"context": no_from}}), 422, "FROM")


def test_inline_job_environment_is_registered_anonymously_once(api: TestClient) -> None:
    first = api.post(f"{WS}/jobs", json={"environment": SKLEARN, "command": "python train.py"})
    assert first.status_code == 201, first.text
    env = first.json()["environment"]
    assert env["name"] == "CliV2AnonymousEnvironment" and env["anonymous"] is True
    assert env["version"] == env["anonymous_version"]
    second = api.post(f"{WS}/jobs", json={"environment": {**SKLEARN, "name": "ignored"}}).json()
    assert second["environment"]["version"] == env["version"] and second["id"] != first.json()["id"]
    job = api.get(f"{WS}/jobs/{first.json()['id']}").json()
    assert job["environment_version"] == env["version"] and job["spec"]["command"] == "python train.py"
    by_version = api.get(f"{WS}/environments/CliV2AnonymousEnvironment/versions/{env['version']}")
    assert by_version.status_code == 200
    assert api.get(f"{WS}/environments").json()["value"] == []


def test_job_references_resolve(api: TestClient) -> None:
    register(api, "e", SKLEARN)
    register(api, "e", {**SKLEARN, "description": "2"})
    pinned = api.post(f"{WS}/jobs", json={"environment": "azureml:e:1"}).json()
    latest = api.post(f"{WS}/jobs", json={"environment": "azureml:e@latest"}).json()
    assert pinned["environment_version"] == "1" and latest["environment_version"] == "2"
    assert api.get(f"{WS}/jobs/{pinned['id']}").json()["environment"]["version"] == "1"
    assert_problem(api.post(f"{WS}/jobs", json={"environment": "azureml:e:9"}), 404, "'9'")
    assert_problem(api.post(f"{WS}/jobs", json={"environment": "azureml:e@stable"}), 422, "label")
    assert_problem(api.get(f"{WS}/jobs/nope"), 404, "nope")
    named = api.post(f"{WS}/jobs", json={"name": "run-1", "environment": "azureml:e:1"})
    assert named.status_code == 201 and named.json()["id"] == "run-1"
    assert_problem(api.post(f"{WS}/jobs", json={"name": "run-1", "environment": "azureml:e:2"}), 409, "run-1")
    assert api.get(f"{WS}/jobs/run-1").json()["environment_version"] == "1"


def test_curated_reference_in_registry_form(curated_api: TestClient) -> None:
    job = curated_api.post(f"{WS}/jobs", json={
        "environment": "azureml://registries/azureml/environments/sklearn-1.0/labels/latest"}).json()
    assert job["environment_name"] == "sklearn-1.0" and job["environment"]["curated"] is True
