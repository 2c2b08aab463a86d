"""The BuildStore contract, run against the fake, SQLite and Cosmos DB (the emulator)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.cosmos_builds import CosmosBuildStore
from shared.adapters.cosmos_emulator import CosmosEmulator
from shared.adapters.sqlite_builds import SqliteBuildStore
from shared.adapters.sqlite_db import Database
from shared.domain.builds import BuildStatus
from shared.domain.errors import NotFound, StaleRecord
from shared.ports import BuildStore
from tests.contract.store_backends import (
    QUIET,
    STORES,
    build,
    cosmos_running,
    cosmos_settings,
    fresh_database,
    make_build_store,
    nowhere,
)
from tests.fakes.stores import FakeBuildStore

pytestmark = QUIET
HASH = "ab" * 32
OTHER = "cd" * 32


@pytest.fixture(scope="module")
def cosmos() -> Iterator[CosmosEmulator]:
    with cosmos_running() as emulator:
        yield emulator


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BuildStore:
    return make_build_store(request.param, tmp_path, request)


def test_start_creates_then_joins_across_workspaces(store: BuildStore) -> None:
    assert store.latest_for_hash(HASH) is None and store.count_for_hash(HASH) == 0
    first, created = store.start_or_join(build(HASH))
    assert created and first.updated_at is not None
    assert store.get(first.id) == first
    joined, created = store.start_or_join(build(HASH, workspace="ws-2"))
    assert not created and joined == first
    other, created = store.start_or_join(build(OTHER))
    assert created and other.id != first.id
    assert store.latest_for_hash(HASH) == first and store.count_for_hash(HASH) == 1
    assert store.get("no-such-build") is None


def test_twenty_concurrent_starts_create_exactly_one(store: BuildStore) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: store.start_or_join(build(HASH)), range(20)))
    assert sum(created for _, created in results) == 1
    assert len({record.id for record, _ in results}) == 1
    assert store.count_for_hash(HASH) == 1
    winner = results[0][0]
    assert store.latest_for_hash(HASH) == store.get(winner.id)


def test_a_finished_build_frees_its_hash(store: BuildStore) -> None:
    first, _ = store.start_or_join(build(HASH))
    running = store.update(first.model_copy(update={"status": BuildStatus.RUNNING}))
    assert running.revision == first.revision + 1
    assert running.updated_at is not None and first.updated_at is not None and running.updated_at >= first.updated_at
    assert store.start_or_join(build(HASH)) == (running, False)
    done = store.update(running.model_copy(update={"status": BuildStatus.FAILED, "reason": "boom"}))
    second, created = store.start_or_join(build(HASH))
    assert created and second.id != first.id
    assert store.latest_for_hash(HASH) == second and store.count_for_hash(HASH) == 2
    assert store.get(first.id) == done


def test_a_stale_update_is_refused(store: BuildStore) -> None:
    record, _ = store.start_or_join(build(HASH))
    moved = store.update(record.model_copy(update={"status": BuildStatus.RUNNING, "attempts": 1}))
    with pytest.raises(StaleRecord):
        store.update(record.model_copy(update={"status": BuildStatus.SUCCEEDED}))
    assert store.get(record.id) == moved
    with pytest.raises(NotFound):
        store.update(build(OTHER))


def test_a_cancel_request_sticks(store: BuildStore) -> None:
    record, _ = store.start_or_join(build(HASH))
    older = store.get(record.id)
    assert older is not None
    flagged = store.request_cancel(record.id)
    assert flagged is not None and flagged.cancel_requested and flagged.revision == older.revision + 1
    with pytest.raises(StaleRecord):  # the handler's copy predates the request: it must read again
        store.update(older.model_copy(update={"status": BuildStatus.RUNNING}))
    # Even a write at the right revision that carries the older, unflagged state keeps the flag.
    saved = store.update(older.model_copy(update={"status": BuildStatus.RUNNING, "revision": flagged.revision}))
    assert saved.cancel_requested and store.get(record.id) == saved
    assert store.request_cancel("no-such-build") is None


def test_cancel_leaves_a_finished_build_alone(store: BuildStore) -> None:
    record, _ = store.start_or_join(build(HASH))
    done = store.update(record.model_copy(update={"status": BuildStatus.SUCCEEDED}))
    assert store.request_cancel(record.id) == done
    assert store.get(record.id) == done


def test_unfinished_lists_idle_builds(store: BuildStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    waiting, _ = store.start_or_join(build(HASH))
    done, _ = store.start_or_join(build(OTHER))
    store.update(done.model_copy(update={"status": BuildStatus.SUCCEEDED}))
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert [b.id for b in store.unfinished(idle_since=later)] == [waiting.id]
    assert store.unfinished(idle_since=before) == []
    assert [b.id for b in store.unfinished(idle_since=later.replace(tzinfo=None))] == [waiting.id]  # naive is UTC


def test_logs_keep_their_order_across_appends_and_offsets(store: BuildStore) -> None:
    store.append_log("b-1", ["one", "two"])
    store.append_log("b-1", [])
    store.append_log("b-1", ["three"])
    store.append_log("b-2", ["elsewhere"])
    assert store.read_log("b-1", 0) == ["one", "two", "three"]
    assert store.read_log("b-1", 1) == ["two", "three"]
    assert store.read_log("b-1", 2) == ["three"]
    assert store.read_log("b-1", 3) == []
    assert store.read_log("b-3", 0) == []
    many = [f"line {i} " + "x" * 300 for i in range(1200)]  # more than one Cosmos chunk
    store.append_log("b-2", many)
    assert store.read_log("b-2", 0) == ["elsewhere", *many]
    assert store.read_log("b-2", 1000) == many[999:]


def test_two_writers_never_corrupt_a_log(store: BuildStore) -> None:
    def write(writer: str) -> None:
        for i in range(10):
            store.append_log("b-1", [f"{writer}{i}a", f"{writer}{i}b"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(write, "xy"))
    lines = store.read_log("b-1", 0)
    assert sorted(lines) == sorted(f"{w}{i}{s}" for w in "xy" for i in range(10) for s in "ab")
    for writer in "xy":
        assert [line for line in lines if line[0] == writer] == [f"{writer}{i}{s}" for i in range(10) for s in "ab"]


def test_check_answers(store: BuildStore) -> None:
    store.check()


@pytest.mark.parametrize("kind", ["fake", "sqlite"])
def test_check_fails_when_the_backend_is_gone(kind: str, tmp_path: Path) -> None:
    if kind == "fake":
        fake = FakeBuildStore()
        fake.down = True
        broken: BuildStore = fake
    else:
        sqlite = SqliteBuildStore(Database(tmp_path / "store.db"))
        sqlite.database.connection().close()  # this thread's connection, as if the file had gone away
        broken = sqlite
    with pytest.raises(Exception):  # noqa: B017 -- any error: the port lets each backend say it its own way
        broken.check()


@pytest.mark.integration
def test_cosmos_check_fails_fast_when_the_emulator_stops() -> None:
    with cosmos_running() as emulator:
        store = CosmosBuildStore(fresh_database(emulator))
        store.check()
    calls: list[Callable[[], object]] = [store.check, lambda: store.get("b-1")]  # the request path too
    for call in calls:
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017
            call()
        assert time.monotonic() - started < 5


@pytest.mark.integration
def test_cosmos_from_settings_fails_fast_where_nothing_listens() -> None:
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017
        CosmosBuildStore.from_settings(cosmos_settings(nowhere(), create=False)).check()
    assert time.monotonic() - started < 5


@pytest.mark.integration
def test_cosmos_hot_paths_are_point_reads(cosmos: CosmosEmulator) -> None:
    store = CosmosBuildStore.from_settings(cosmos_settings(cosmos.endpoint, create=True))
    record, _ = store.start_or_join(build(HASH))
    store.operations.clear()
    assert store.get(record.id) == record
    assert store.operations == {"read": 1}
    store.operations.clear()
    assert store.latest_for_hash(HASH) == record
    assert store.operations["read"] <= 2 and set(store.operations) == {"read"}
    store.operations.clear()
    assert store.count_for_hash(HASH) == 1 and store.operations == {"read": 1}


@pytest.mark.integration
def test_cosmos_heals_a_head_left_by_a_crash(cosmos: CosmosEmulator) -> None:
    database = fresh_database(cosmos)
    store = CosmosBuildStore(database)
    container = database.get_container_client("builds")
    first, _ = store.start_or_join(build(HASH))
    # The build finished but its starter died before clearing the head: the head still names it.
    finished = first.model_copy(update={"status": BuildStatus.SUCCEEDED, "revision": 1})
    doc = container.read_item(first.id, partition_key=first.id)
    container.replace_item(first.id, {**doc, "finished": True, "record": finished.model_dump(mode="json")})
    second, created = store.start_or_join(build(HASH))
    assert created and store.count_for_hash(HASH) == 2
    # The head names a build that was never written (its starter died between the two writes).
    head = container.read_item(f"hash:{HASH}", partition_key=f"hash:{HASH}")
    container.replace_item(head["id"], {**head, "active": "vanished"})
    store.update(second.model_copy(update={"status": BuildStatus.CANCELLED}))
    third, created = store.start_or_join(build(HASH))
    assert created and store.latest_for_hash(HASH) == third
    # An orphan (written, never made active) is no build to recover.
    orphan = build(OTHER)
    container.create_item({"id": orphan.id, "pk": orphan.id, "type": "build", "hash": OTHER, "finished": False,
                           "updated_at": "2000-01-01T00:00:00.000000Z", "record": orphan.model_dump(mode="json")})
    assert [b.id for b in store.unfinished(idle_since=datetime.now(UTC) + timedelta(seconds=1))] == [third.id]
