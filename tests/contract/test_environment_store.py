"""The EnvironmentStore contract, run against the fake, SQLite and Cosmos DB (the emulator)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.adapters.cosmos_emulator import CosmosEmulator
from shared.adapters.cosmos_store import CosmosStore
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_store import SqliteStore
from shared.domain.records import EnvironmentRecord, JobRecord
from shared.ports import EnvironmentStore, Page
from tests.contract.store_backends import (
    QUIET,
    STORES,
    WORKSPACE,
    cosmos_running,
    cosmos_settings,
    environment,
    fresh_database,
    make_environment_store,
    nowhere,
)
from tests.fakes.stores import FakeEnvironmentStore

pytestmark = QUIET


@pytest.fixture(scope="module")
def cosmos() -> Iterator[CosmosEmulator]:
    with cosmos_running() as emulator:
        yield emulator


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EnvironmentStore:
    return make_environment_store(request.param, tmp_path, request)


def versions(records: list[EnvironmentRecord]) -> list[str]:
    return [r.version for r in records]


def latest_version(store: EnvironmentStore, name: str) -> str | None:
    latest = store.latest(WORKSPACE, name)
    return None if latest is None else latest.version


def every_page(fetch: Callable[[str | None], Page[EnvironmentRecord]], top: int) -> list[Page[EnvironmentRecord]]:
    """Follow cursors to the end."""
    pages = [fetch(None)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 50, "the cursors do not end"
        pages.append(fetch(pages[-1].next_cursor))
    assert all(len(page.items) <= top for page in pages)
    return pages


def test_insert_is_idempotent_and_get_reads_it_back(store: EnvironmentStore) -> None:
    first = environment("torch", "1.0")
    assert store.insert(first)
    assert not store.insert(environment("torch", "1.0"))
    assert store.get(WORKSPACE, "torch", "1.0") == first
    assert store.get(WORKSPACE, "torch", "2.0") is None
    assert store.get(WORKSPACE, "Torch", "1.0") is None  # names are case-sensitive as stored
    assert store.get("other-ws", "torch", "1.0") is None


def test_fifty_concurrent_insert_next_get_one_to_fifty(store: EnvironmentStore) -> None:
    with ThreadPoolExecutor(max_workers=50) as pool:
        stored = list(pool.map(lambda _: store.insert_next(environment("busy", "ignored")), range(50)))
    assert sorted(int(r.version) for r in stored) == list(range(1, 51))
    assert all(store.get(WORKSPACE, "busy", r.version) == r for r in stored)
    latest = store.latest(WORKSPACE, "busy")
    assert latest is not None and latest.version == "50"


def test_explicit_versions_raise_the_counter(store: EnvironmentStore) -> None:
    assert store.insert_next(environment("env")).version == "1"
    assert store.insert(environment("env", "7"))
    assert store.insert_next(environment("env")).version == "8"
    assert store.insert(environment("env", "v12"))  # not all digits: no effect on the counter
    assert store.insert(environment("env", "3"))  # lower than the counter: no effect either
    assert store.insert_next(environment("env")).version == "9"
    assert store.set_archived(WORKSPACE, "env", "9", True) is not None
    assert store.insert_next(environment("env")).version == "10"  # archived versions still count
    assert store.insert_next(environment("other")).version == "1"  # counters are per name
    assert store.insert_next(environment("env", workspace="ws-2")).version == "1"  # and per workspace


def test_latest_follows_creation_order_archive_and_restore(store: EnvironmentStore) -> None:
    assert store.latest(WORKSPACE, "env") is None
    for version in ("1", "2", "beta"):
        store.insert(environment("env", version))
    assert latest_version(store, "env") == "beta"
    archived = store.set_archived(WORKSPACE, "env", "beta", True)
    assert archived is not None and archived.archived
    assert store.get(WORKSPACE, "env", "beta") == archived
    assert latest_version(store, "env") == "2"
    store.set_archived(WORKSPACE, "env", "2", True)
    store.set_archived(WORKSPACE, "env", "1", True)
    assert store.latest(WORKSPACE, "env") is None
    restored = store.set_archived(WORKSPACE, "env", "1", False)
    assert restored is not None and not restored.archived
    assert latest_version(store, "env") == "1"
    store.set_archived(WORKSPACE, "env", "beta", False)
    assert latest_version(store, "env") == "beta"
    assert store.set_archived(WORKSPACE, "env", "404", True) is None
    assert store.set_archived(WORKSPACE, "nothing", "1", True) is None


def test_list_latest_pages_by_name(store: EnvironmentStore) -> None:
    for i in range(7):
        store.insert(environment(f"env-{i}", "1"))
        store.insert(environment(f"env-{i}", "2"))
    store.set_archived(WORKSPACE, "env-3", "2", True)  # its latest is then version 1
    store.insert(environment("gone", "1", archived=True))  # nothing live: not listed
    store.insert(environment("anon", "abc", anonymous=True))  # anonymous: never listed
    store.insert(environment("elsewhere", "1", workspace="ws-2"))
    pages = every_page(lambda cursor: store.list_latest(WORKSPACE, top=3, cursor=cursor), top=3)
    listed = [(r.name, r.version) for page in pages for r in page.items]
    assert listed == [(f"env-{i}", "1" if i == 3 else "2") for i in range(7)]
    assert [len(page.items) for page in pages] == [3, 3, 1]
    assert store.list_latest("ws-3", top=3, cursor=None) == Page([], None)


def test_history_pages_newest_first_with_archived_ones(store: EnvironmentStore) -> None:
    for version in ("1", "2", "x", "3", "4", "5", "6"):
        store.insert(environment("env", version))
    store.set_archived(WORKSPACE, "env", "3", True)
    store.insert(environment("env-other", "1"))
    pages = every_page(lambda cursor: store.history(WORKSPACE, "env", top=3, cursor=cursor), top=3)
    assert [versions(page.items) for page in pages] == [["6", "5", "4"], ["3", "x", "2"], ["1"]]
    assert pages[1].items[0].archived
    exact = every_page(lambda cursor: store.history(WORKSPACE, "env", top=7, cursor=cursor), top=7)
    assert [r for page in exact for r in page.items] == [r for page in pages for r in page.items]
    assert store.history(WORKSPACE, "missing", top=3, cursor=None) == Page([], None)


def test_jobs(store: EnvironmentStore) -> None:
    job = JobRecord(workspace=WORKSPACE, id="job/1?#%", environment_name="env", environment_version="1",
                    environment_hash="ab" * 32, created_at=environment("env").created_at, spec={"command": "x"})
    assert store.insert_job(job)
    assert not store.insert_job(job.model_copy(update={"environment_version": "2"}))
    assert store.get_job(WORKSPACE, job.id) == job
    assert store.get_job(WORKSPACE, "job%2F1%3F%23%25") is None  # an escaped id is another id
    assert store.get_job("ws-2", job.id) is None


def test_job_updates_are_not_lost_to_each_other(store: EnvironmentStore) -> None:
    job = JobRecord(workspace=WORKSPACE, id="tagged", environment_name="env", environment_version="1",
                    environment_hash="ab" * 32, created_at=environment("env").created_at, spec={"tags": []})
    assert store.insert_job(job)

    def tag(n: int) -> Callable[[JobRecord], JobRecord]:
        return lambda current: current.model_copy(update={"spec": {"tags": [*current.spec["tags"], n]}})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: store.update_job(WORKSPACE, "tagged", tag(n)), range(8)))
    stored = store.get_job(WORKSPACE, "tagged")
    assert stored is not None and sorted(stored.spec["tags"]) == list(range(8))
    assert store.update_job(WORKSPACE, "missing", tag(0)) is None
    assert store.update_job("ws-2", "tagged", tag(0)) is None


def test_check_answers(store: EnvironmentStore) -> None:
    store.check()


@pytest.mark.parametrize("kind", ["fake", "sqlite"])
def test_check_fails_when_the_backend_is_gone(kind: str, tmp_path: Path) -> None:
    if kind == "fake":
        fake = FakeEnvironmentStore()
        fake.down = True
        broken: EnvironmentStore = fake
    else:
        sqlite = SqliteStore(Database(tmp_path / "store.db"))
        sqlite.database.connection().close()  # this thread's connection, as if the file had gone away
        broken = sqlite
    with pytest.raises(Exception):  # noqa: B017 -- any error: the port lets each backend say it its own way
        broken.check()


@pytest.mark.integration
def test_cosmos_check_fails_fast_when_the_emulator_stops() -> None:
    with cosmos_running() as emulator:
        store = CosmosStore(fresh_database(emulator))
        store.check()
    calls: list[Callable[[], object]] = [store.check, lambda: store.latest(WORKSPACE, "env")]  # the request path too
    for call in calls:
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017
            call()
        assert time.monotonic() - started < 5


@pytest.mark.integration
def test_cosmos_from_settings_fails_fast_where_nothing_listens() -> None:
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017
        CosmosStore.from_settings(cosmos_settings(nowhere(), create=False)).check()
    assert time.monotonic() - started < 5


@pytest.mark.integration
def test_cosmos_hot_paths_are_point_reads(cosmos: CosmosEmulator) -> None:
    store = CosmosStore.from_settings(cosmos_settings(cosmos.endpoint, create=True))
    store.insert(environment("env", "1"))
    store.insert_next(environment("env"))
    store.operations.clear()
    assert store.get(WORKSPACE, "env", "1") is not None
    assert store.operations == {"read": 1}
    store.operations.clear()
    assert latest_version(store, "env") == "2"
    assert store.operations["read"] <= 2 and store.operations["query"] == 0
    assert set(store.operations) == {"read"}


@pytest.mark.integration
def test_cosmos_insert_next_heals_after_a_crash(cosmos: CosmosEmulator) -> None:
    database = fresh_database(cosmos)
    store = CosmosStore(database)
    container = database.get_container_client("environments")
    assert store.insert_next(environment("env")).version == "1"
    # A crash after the counter moved and before the version was written: a gap, never a stuck name.
    head = container.read_item("n:env", partition_key=WORKSPACE)
    container.replace_item("n:env", {**head, "counter": 2})
    # A version written by a call that died before raising the counter: insert_next must go past it.
    doc = container.read_item("v:env:1", partition_key=WORKSPACE)
    orphan = environment("env", "3")
    container.create_item({**{k: v for k, v in doc.items() if not k.startswith("_")}, "id": "v:env:3",
                           "version": "3", "key": f"{int(doc['key'][:16]) + 1:016d}.00000000",
                           "record": orphan.model_dump(mode="json")})
    assert store.insert_next(environment("env")).version == "4"
    assert versions(store.history(WORKSPACE, "env", top=10, cursor=None).items) == ["4", "3", "1"]
    assert latest_version(store, "env") == "4"
    assert not store.insert(orphan)  # registering it again finds it (and lets the head account for it)


def test_each_version_walks_every_workspace_archived_and_anonymous_included(store: EnvironmentStore) -> None:
    expected: set[tuple[str, str, str]] = set()
    for workspace in ("ws-a", "ws-b"):
        for index in range(3):
            record = environment(f"env-{index}", workspace=workspace)
            assert store.insert(record)
            expected.add((workspace, record.name, record.version))
    hidden = environment("hidden", workspace="ws-a", anonymous=True)
    assert store.insert(hidden)
    expected.add(("ws-a", "hidden", "1"))
    store.set_archived("ws-b", "env-0", "1", True)
    walked = [(r.workspace, r.name, r.version) for r in store.each_version()]
    assert sorted(walked) == sorted(expected) and len(walked) == len(set(walked))
