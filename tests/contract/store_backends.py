"""The backends the environment- and build-store contracts run against: fakes, SQLite, and the Cosmos DB emulator."""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.cosmos import DatabaseProxy

from shared.adapters.cosmos_builds import CosmosBuildStore
from shared.adapters.cosmos_common import open_database
from shared.adapters.cosmos_emulator import EMULATOR_KEY, CosmosEmulator, CosmosEmulatorNotInstalled
from shared.adapters.cosmos_store import CosmosStore
from shared.adapters.sqlite_builds import SqliteBuildStore
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_store import SqliteStore
from shared.domain.builds import BuildRecord, new_build_id
from shared.domain.definition import Definition, Kind
from shared.domain.records import Description, EnvironmentRecord
from shared.ports import BuildStore, EnvironmentStore
from shared.settings import Settings
from tests.fakes.stores import FakeBuildStore, FakeEnvironmentStore
from tests.support import unavailable

STORES = ["fake", "sqlite", pytest.param("cosmos", marks=pytest.mark.integration)]
# The emulator's certificate is self-signed on purpose; the adapters skip verification only for loopback.
QUIET = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
WORKSPACE = "ws-1"


@contextmanager
def cosmos_running() -> Iterator[CosmosEmulator]:
    """The Cosmos DB emulator for one module (each xdist worker has its own); skipped here, failed in CI when
    it is not installed."""
    try:
        emulator = CosmosEmulator().start()
    except CosmosEmulatorNotInstalled as error:
        unavailable(str(error))
    try:
        yield emulator
    finally:
        emulator.stop()


def fresh_database(emulator: CosmosEmulator) -> DatabaseProxy:
    """A database of its own for one test, containers created."""
    return open_database(emulator.endpoint, credential=emulator.key, database=f"t-{uuid.uuid4().hex}", create=True)


def cosmos_settings(endpoint: str, *, create: bool) -> Settings:
    """Settings for the Cosmos DB adapters on an emulator (or on a port where nothing listens)."""
    return Settings(store="cosmos", cosmos_endpoint=endpoint, cosmos_key=EMULATOR_KEY,
                    cosmos_database=f"t-{uuid.uuid4().hex}", cosmos_create=create)


def nowhere() -> str:
    """An https endpoint on a loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{probe.getsockname()[1]}/"


def make_environment_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> EnvironmentStore:
    """A fresh, empty environment store of the given kind."""
    if kind == "fake":
        return FakeEnvironmentStore()
    if kind == "sqlite":
        return SqliteStore(Database(folder / "store.db"))
    return CosmosStore(fresh_database(request.getfixturevalue("cosmos")))


def make_build_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> BuildStore:
    """A fresh, empty build store of the given kind."""
    if kind == "fake":
        return FakeBuildStore()
    if kind == "sqlite":
        return SqliteBuildStore(Database(folder / "store.db"))
    return CosmosBuildStore(fresh_database(request.getfixturevalue("cosmos")))


def environment(name: str, version: str = "1", *, workspace: str = WORKSPACE, anonymous: bool = False,
                archived: bool = False) -> EnvironmentRecord:
    """A minimal version record."""
    definition = Definition(kind=Kind.USER_IMAGE, image="python:3.11-slim", description=f"{name} {version}")
    digest = hashlib.sha256(f"{name}:{version}".encode()).hexdigest()
    description = Description(definition=definition, hash=digest, image=f"azureml/azureml_{digest[:32]}",
                              base_images=["python:3.11-slim"], anonymous_version=digest[:32])
    return EnvironmentRecord(workspace=workspace, name=name, version=version, description=description,
                             anonymous=anonymous, archived=archived, created_at=datetime.now(UTC))


def build(hash_hex: str, *, workspace: str = WORKSPACE) -> BuildRecord:
    """A new queued build of a hash."""
    return BuildRecord(id=new_build_id(), hash=hash_hex, workspace=workspace, environment_name="env",
                       environment_version="1", image=f"azureml/azureml_{hash_hex[:32]}",
                       created_at=datetime.now(UTC))
