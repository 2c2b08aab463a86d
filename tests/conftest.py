"""Shared fixtures: an envhub app over a fresh data folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.adapters.azurite import EMULATORS as EMULATOR_BIN
from shared.bootstrap import build_services
from shared.settings import Settings
from tests.auth import authorized
from tests.support import CORPUS, running_server, unavailable


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    """The HTTP API over an empty store, no curated catalog."""
    with TestClient(create_app(build_services(Settings(data_dir=tmp_path / "data")))) as client:
        yield authorized(client)


@pytest.fixture
def curated_api(tmp_path: Path) -> Iterator[TestClient]:
    """The HTTP API with the corpus's curated catalog loaded."""
    from tests.support import corpus

    corpus()
    settings = Settings(data_dir=tmp_path / "data", curated_dir=CORPUS / "curated")
    with TestClient(create_app(build_services(settings))) as client:
        yield authorized(client)



HOMES = ["local", pytest.param("emulators", marks=pytest.mark.integration)]


def _home_args(home: str) -> tuple[str, ...]:
    """`envhub serve` arguments for a home: SQLite, or the Azure adapters on emulators (`--emulators`)."""
    if home == "local":
        return ()
    if not EMULATOR_BIN.is_dir():
        unavailable("the emulators are not installed (`make emulators`)")
    return ("--emulators",)


@pytest.fixture(params=HOMES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A real `envhub serve` process on a free loopback port, in each home; yields its base URL."""
    with running_server(tmp_path, *_home_args(request.param)) as url:
        yield url


@pytest.fixture(scope="module", params=HOMES)
def module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real server shared by a module's tests, in each home."""
    with running_server(tmp_path_factory.mktemp("server"), *_home_args(request.param)) as url:
        yield url
