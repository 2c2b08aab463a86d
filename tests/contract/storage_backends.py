"""The backends the queue and context-store contracts run against: fakes, local files, and Azurite."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from azure.storage.blob import ContainerClient

from shared.adapters import blob_contexts
from shared.adapters.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, AzuriteNotInstalled
from shared.adapters.blob_contexts import BlobContextStore
from shared.adapters.file_contexts import FileContextStore
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_queue import SqliteQueue
from shared.adapters.storage_queue import StorageQueue
from shared.ports import ContextStore, QueueConsumer, QueueSender
from shared.settings import Settings
from tests.fakes.contexts import FakeContextStore
from tests.fakes.queues import FakeQueue
from tests.support import unavailable

QUEUES = ["fake", "sqlite", pytest.param("storage", marks=pytest.mark.integration)]
CONTEXT_STORES = ["fake", "file", pytest.param("blob", marks=pytest.mark.integration)]
BLOCK = 1 << 20  # Azurite-backed stores upload in 1 MiB blocks, so a few megabytes take the staged path


class InspectableQueue(QueueSender, QueueConsumer, Protocol):
    """A queue with the helpers every adapter offers tests."""

    def depth(self) -> int:
        """Messages waiting or in flight."""

    def poisoned(self) -> list[tuple[str, str]]:
        """(body, reason) of the poisoned messages."""


@dataclass
class ContextBackend:
    """A store, and every name it holds (temporary files and uncommitted blobs included)."""

    store: ContextStore
    stored: Callable[[], list[str]]


@contextmanager
def azurite_running() -> Iterator[Azurite]:
    """Azurite for one module (each xdist worker has its own); skipped here, failed in CI when missing."""
    try:
        emulator = Azurite().start()
    except AzuriteNotInstalled as error:
        unavailable(str(error))
    try:
        yield emulator
    finally:
        emulator.stop()


def unique_name(prefix: str) -> str:
    """A queue or container name no other test uses (lowercase letters, digits and hyphens)."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def storage_settings(connection_string: str, *, create: bool) -> Settings:
    """Settings for both Azure Storage adapters on an emulator."""
    return Settings(queue="storage", contexts="blob", storage_connection_string=connection_string,
                    storage_create=create, blob_container=unique_name("ctx"))


def nowhere() -> str:
    """A connection string to a loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={endpoint};QueueEndpoint={endpoint}")


def make_queue(kind: str, folder: Path, request: pytest.FixtureRequest) -> InspectableQueue:
    """A fresh, empty queue of the given kind."""
    if kind == "fake":
        return FakeQueue()
    if kind == "sqlite":
        return SqliteQueue(Database(folder / "queue.db"), "jobs")
    emulator: Azurite = request.getfixturevalue("azurite")
    return StorageQueue.from_settings(storage_settings(emulator.connection_string, create=True), unique_name("q"))


def unreachable_queue(kind: str, folder: Path) -> QueueSender:
    """A queue whose backend does not answer."""
    if kind == "fake":
        fake = FakeQueue()
        fake.down = True
        return fake
    if kind == "sqlite":
        queue = SqliteQueue(Database(folder / "queue.db"), "jobs")
        queue.database.connection().close()  # this thread's connection, as if the file had gone away
        return queue
    return StorageQueue.from_settings(storage_settings(nowhere(), create=False), "jobs")


def make_context_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> ContextBackend:
    """A fresh, empty context store of the given kind."""
    if kind == "fake":
        fake = FakeContextStore()
        return ContextBackend(fake, fake.stored)
    if kind == "file":
        root = folder / "contexts"
        return ContextBackend(FileContextStore(root), lambda: sorted(
            str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()))
    emulator: Azurite = request.getfixturevalue("azurite")
    settings = storage_settings(emulator.connection_string, create=True)
    BlobContextStore.from_settings(settings)  # creates the container
    container = ContainerClient.from_connection_string(
        emulator.connection_string, settings.blob_container, max_single_put_size=BLOCK, max_block_size=BLOCK,
        **blob_contexts.client_options())
    return ContextBackend(BlobContextStore(container), lambda: sorted(
        blob.name for blob in container.list_blobs(include=["uncommittedblobs"])))


def unreachable_context_store(kind: str, folder: Path) -> ContextStore:
    """A context store whose backend does not answer."""
    if kind == "fake":
        fake = FakeContextStore()
        fake.down = True
        return fake
    if kind == "file":
        store = FileContextStore(folder / "contexts")
        shutil.rmtree(store.root)  # the data folder vanished (an unmounted volume)
        return store
    return BlobContextStore.from_settings(storage_settings(nowhere(), create=False))
