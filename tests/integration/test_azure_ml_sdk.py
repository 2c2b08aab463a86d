"""Azure ML's own SDK (azure-ai-ml's MLClient.environments) against `envhub serve --tls`, unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.constants import ListViewType
from azure.ai.ml.entities import Environment
from azure.core.exceptions import ClientAuthenticationError, ResourceExistsError, ResourceNotFoundError

from shared.adapters.azurite import EMULATORS as EMULATOR_BIN
from tests.sdk_server import WORKSPACE, Served, ml_client, serving_tls
from tests.support import REPO, unavailable

PAGE_SIZE = 2  # the server's ARM page size: every list below spans several pages
IMAGE = "python:3.11-slim"


@pytest.fixture(scope="module", params=["local", pytest.param("emulators", marks=pytest.mark.integration)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`envhub serve --tls` in each home (SQLite; Cosmos DB and Azurite emulators), its worker off: builds stay
    queued, nothing is built."""
    home = ["--emulators"] if request.param == "emulators" else []
    if home and not EMULATOR_BIN.is_dir():
        unavailable("the emulators are not installed (`make emulators`)")
    with serving_tls(tmp_path_factory.mktemp("sdk"), *home,
                     env={"ENVHUB_ARM_PAGE_SIZE": str(PAGE_SIZE), "ENVHUB_WORKER": "false"}) as served:
        yield served


@pytest.fixture
def ml(server: Served, monkeypatch: pytest.MonkeyPatch) -> MLClient:
    """An MLClient pointed at envhub, as the README shows it."""
    return ml_client(server, server.token, monkeypatch)


def conda(*packages: str) -> dict[str, Any]:
    return {"name": "env", "channels": ["conda-forge"], "dependencies": ["python=3.11", {"pip": list(packages)}]}


def envhub_version(server: Served, name: str, version: str) -> dict[str, Any]:
    with server.api() as api:
        response = api.get(f"/workspaces/{WORKSPACE}/environments/{name}/versions/{version}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def same_in_envhub(server: Served, made: Environment, **document: Any) -> None:
    """The version the SDK made is envhub's own record of `document`, hashed as envhub hashes it."""
    record = envhub_version(server, str(made.name), str(made.version))
    with server.api() as api:
        hashed = api.post("/hash", json=document).json()
    assert record["hash"] == hashed["hash"] and record["image"] == hashed["image"]
    assert {k: record["definition"].get(k) for k in document} == document


def test_create_with_and_without_version_is_envhubs_own_version(ml: MLClient, server: Served) -> None:
    first = ml.environments.create_or_update(Environment(name="sdk-a", image=IMAGE, conda_file=conda("numpy"),
                                                         description="first", tags={"team": "ml"}))
    assert first.version == "1" and first.conda_file == conda("numpy") and first.tags == {"team": "ml"}
    again = ml.environments.create_or_update(Environment(name="sdk-a", image=IMAGE, conda_file=conda("numpy")))
    assert again.version == "1" and again.description == "first"  # same content: same version, fields kept
    pinned = Environment(name="sdk-a", version="7", image=IMAGE, conda_file=conda("pandas"))
    assert ml.environments.create_or_update(pinned).version == "7"
    assert ml.environments.create_or_update(pinned).version == "7"
    after = ml.environments.create_or_update(Environment(name="sdk-a", image=IMAGE, conda_file=conda("scipy")))
    assert after.version == "8"  # the container's nextVersion, past the pinned 7
    same_in_envhub(server, pinned, image=IMAGE, conda_file=conda("pandas"))
    same_in_envhub(server, after, image=IMAGE, conda_file=conda("scipy"))
    got = ml.environments.get("sdk-a", version="1")
    assert (got.image, got.conda_file, got.os_type, got.name) == (IMAGE, conda("numpy"), "Linux", "sdk-a")
    assert got.id.endswith(f"/workspaces/{WORKSPACE}/environments/sdk-a/versions/1")
    # The same record through envhub's own API, hashed as envhub hashes the same definition.
    record = envhub_version(server, "sdk-a", "1")
    with server.api() as api:
        hashed = api.post("/hash", json={"image": IMAGE, "conda_file": conda("numpy")}).json()
        assert record["hash"] == hashed["hash"] and record["definition"]["description"] == "first"
        built = api.post(f"/workspaces/{WORKSPACE}/environments/sdk-a/versions/1/image")
        assert built.status_code == 202 and record["image"] in built.json()["image"]  # queued (worker off)
    shown = subprocess.run([sys.executable, "-m", "cli.main", "show", "sdk-a:1", "--json", "--url", server.url,
                            "--workspace", WORKSPACE], capture_output=True, text=True, cwd=REPO, timeout=60,
                           env={**os.environ, "ENVHUB_DATA_DIR": str(server.data)})
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["hash"] == hashed["hash"]


def test_changed_content_under_a_version_is_a_conflict_and_descriptions_merge(ml: MLClient, server: Served) -> None:
    made = ml.environments.create_or_update(Environment(name="sdk-b", version="1", image=IMAGE, description="one"))
    same_in_envhub(server, made, image=IMAGE, description="one")
    with pytest.raises(ResourceExistsError, match="image"):
        ml.environments.create_or_update(Environment(name="sdk-b", version="1", image="python:3.12-slim"))
    with pytest.raises(ResourceExistsError, match="condaFile"):
        ml.environments.create_or_update(Environment(name="sdk-b", version="1", image=IMAGE, conda_file=conda()))
    changed = ml.environments.create_or_update(Environment(name="sdk-b", version="1", image=IMAGE,
                                                           description="two", tags={"k": "v"}))
    assert (changed.version, changed.description, changed.tags) == ("1", "two", {"k": "v"})
    same_in_envhub(server, changed, image=IMAGE, description="two", tags={"k": "v"})  # merged; hash unchanged
    with pytest.raises(ResourceNotFoundError):
        ml.environments.get("sdk-b", version="404")


def test_concurrent_creates_without_version_lose_nothing(ml: MLClient, server: Served) -> None:
    ml.environments.create_or_update(Environment(name="sdk-c", image=IMAGE))

    def create(index: int) -> tuple[int, str | None]:
        try:
            made = ml.environments.create_or_update(Environment(name="sdk-c", image=IMAGE,
                                                                conda_file=conda(f"pkg{index}")))
        except ResourceExistsError:
            return index, None
        return index, made.version

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(create, range(6)))
    made = {version: index for index, version in results if version is not None}
    assert made and len(made) == sum(1 for _, version in results if version is not None)  # distinct versions
    for version, index in made.items():  # each holds what its creator sent: nothing overwritten
        got = ml.environments.get("sdk-c", version=version)
        assert got.conda_file == conda(f"pkg{index}")
        same_in_envhub(server, got, image=IMAGE, conda_file=conda(f"pkg{index}"))
    listed = {e.version for e in ml.environments.list(name="sdk-c", list_view_type=ListViewType.ALL)}
    assert listed == {"1", *made}  # and nothing stored that no caller was told of


def test_latest_lists_views_and_paging(ml: MLClient) -> None:
    for index in range(5):
        ml.environments.create_or_update(Environment(name="sdk-d", image=IMAGE, conda_file=conda(f"p{index}")))
    ml.environments.archive("sdk-d", version="2")
    ml.environments.archive("sdk-d", label="latest")  # version 5
    assert ml.environments.get("sdk-d", label="latest").version == "4"

    def versions(view: ListViewType) -> list[str]:
        return [e.version for e in ml.environments.list(name="sdk-d", list_view_type=view)]

    assert versions(ListViewType.ACTIVE_ONLY) == ["4", "3", "1"]
    assert versions(ListViewType.ARCHIVED_ONLY) == ["5", "2"]
    assert versions(ListViewType.ALL) == ["5", "4", "3", "2", "1"]
    ml.environments.restore("sdk-d", version="5")
    assert ml.environments.get("sdk-d", label="latest").version == "5"
    assert ml.environments.get("sdk-d", version="2").conda_file == conda("p1")  # archived: still readable


def test_archive_and_restore_a_container(ml: MLClient) -> None:
    for name in ("sdk-e1", "sdk-e2", "sdk-e3"):
        ml.environments.create_or_update(Environment(name=name, image=IMAGE))

    def names(view: ListViewType) -> set[str]:
        return {e.name for e in ml.environments.list(list_view_type=view)}

    assert {"sdk-e1", "sdk-e2", "sdk-e3"} <= names(ListViewType.ACTIVE_ONLY)
    ml.environments.archive("sdk-e2")
    assert "sdk-e2" not in names(ListViewType.ACTIVE_ONLY) and "sdk-e2" in names(ListViewType.ARCHIVED_ONLY)
    assert {"sdk-e1", "sdk-e2", "sdk-e3"} <= names(ListViewType.ALL)
    with pytest.raises(Exception, match="does not exist"):
        ml.environments.get("sdk-e2", label="latest")
    ml.environments.restore("sdk-e2")
    assert "sdk-e2" in names(ListViewType.ACTIVE_ONLY) and "sdk-e2" not in names(ListViewType.ARCHIVED_ONLY)
    assert ml.environments.get("sdk-e2", label="latest").version == "1"


def test_an_anonymous_environment_takes_azure_mls_version(ml: MLClient, server: Served) -> None:
    inline = Environment(image=IMAGE, conda_file=conda("requests"), is_anonymous=True)
    registered = ml.environments.create_or_update(inline)
    # The SDK re-derives an anonymous version when it reads one back (before it sets the conda file, so from the
    # image alone), whatever the service says: the id is what the service registered.
    assert registered.id.endswith(f"/environments/CliV2AnonymousEnvironment/versions/{inline.version}")
    with server.api() as api:
        hashed = api.post("/hash", json={"image": IMAGE, "conda_file": conda("requests")}).json()
    assert hashed["anonymous_version"] == inline.version
    assert envhub_version(server, "CliV2AnonymousEnvironment", hashed["anonymous_version"])["anonymous"] is True
    assert "CliV2AnonymousEnvironment" not in {e.name for e in ml.environments.list()}


def test_a_wrong_token_is_an_authentication_error(server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClientAuthenticationError):
        ml_client(server, "not-a-token", monkeypatch).environments.get("sdk-a", version="1")
