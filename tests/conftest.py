"""Shared fixtures: an envhub app over a fresh data folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.bootstrap import Services, build_services
from shared.settings import Settings
from tests.support import CORPUS, running_server


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    """The HTTP API over an empty store, no curated catalog."""
    with TestClient(create_app(build_services(Settings(data_dir=tmp_path / "data")))) as client:
        yield client


@pytest.fixture
def curated_api(tmp_path: Path) -> Iterator[TestClient]:
    """The HTTP API with the corpus's curated catalog loaded."""
    from tests.support import corpus

    corpus()
    settings = Settings(data_dir=tmp_path / "data", curated_dir=CORPUS / "curated")
    with TestClient(create_app(build_services(settings))) as client:
        yield client



@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A real `envhub serve` process on a free loopback port; yields its base URL."""
    with running_server(tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real server shared by a module's tests."""
    with running_server(tmp_path_factory.mktemp("server")) as url:
        yield url


def build_services_for_unit(folder: Path) -> Services:
    """Real services over a throwaway data folder (SQLite in a temp dir is fast enough for unit tests)."""
    return build_services(Settings(data_dir=folder / "data", registry="reg:5000"))
