"""The InboxStore contract on the fake, SQLite and Cosmos DB (the emulator)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Barrier

import pytest

from shared.adapters.cosmos_emulator import CosmosEmulator
from shared.adapters.cosmos_inbox import CosmosInboxStore
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_inbox import SqliteInboxStore
from shared.domain.inbox import BuildWaiter, InboxEntry
from shared.ports import InboxStore
from tests.contract.store_backends import QUIET, STORES, cosmos_running, fresh_database
from tests.fakes.inbox import FakeInboxStore

pytestmark = QUIET
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WS = "ws-1"


@pytest.fixture(scope="module")
def cosmos() -> Iterator[CosmosEmulator]:
    with cosmos_running() as emulator:
        yield emulator


@pytest.fixture(params=STORES)
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> InboxStore:
    if request.param == "fake":
        return FakeInboxStore()
    if request.param == "sqlite":
        return SqliteInboxStore(Database(tmp_path / "store.db"))
    return CosmosInboxStore(fresh_database(request.getfixturevalue("cosmos")))


def entry(correlation_id: str = "c-1", fingerprint: str = "f-1", *, workspace: str = WS,
          at: datetime = T0) -> InboxEntry:
    return InboxEntry(workspace=workspace, correlation_id=correlation_id, fingerprint=fingerprint, claimed_at=at)


def waiter(build_id: str, correlation_id: str, *, workspace: str = WS, reply_to: str = "replies") -> BuildWaiter:
    return BuildWaiter(build_id=build_id, workspace=workspace, correlation_id=correlation_id, reply_to=reply_to)


def test_a_claim_stores_the_first_entry_and_later_claims_get_it_unchanged(inbox: InboxStore) -> None:
    first = entry(fingerprint="f-1")
    assert inbox.claim(first) == first
    assert inbox.claim(entry(fingerprint="f-2", at=T0 + timedelta(minutes=1))) == first
    assert inbox.get_entry(WS, "c-1") == first
    assert inbox.get_entry(WS, "c-2") is None and inbox.get_entry("elsewhere", "c-1") is None


def test_concurrent_claims_all_get_the_winner(inbox: InboxStore) -> None:
    start = Barrier(8)

    def claim(i: int) -> InboxEntry:
        start.wait()
        return inbox.claim(entry("race", f"f-{i}", at=T0 + timedelta(seconds=i)))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, range(8)))
    assert len(set(results)) == 1
    assert results[0].fingerprint in {f"f-{i}" for i in range(8)}
    assert inbox.get_entry(WS, "race") == results[0]


def test_finish_records_the_first_reply_only(inbox: InboxStore) -> None:
    claimed = inbox.claim(entry())
    finished = inbox.finish(WS, "c-1", {"status": "submitted", "job": "j-1"}, build_id="b-1")
    assert finished == claimed.model_copy(update={"reply": {"status": "submitted", "job": "j-1"}, "build_id": "b-1"})
    assert inbox.get_entry(WS, "c-1") == finished
    assert inbox.finish(WS, "c-1", {"status": "failed"}) == finished  # the first reply stays
    assert inbox.get_entry(WS, "c-1") == finished
    assert inbox.finish(WS, "never-claimed", {"status": "failed"}) is None
    assert inbox.get_entry(WS, "never-claimed") is None


def test_concurrent_finishes_agree_on_one_reply(inbox: InboxStore) -> None:
    inbox.claim(entry())
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: inbox.finish(WS, "c-1", {"n": i}), range(6)))
    assert len({r.model_dump_json() for r in results if r is not None}) == 1 and None not in results
    assert inbox.get_entry(WS, "c-1") == results[0]


def test_entries_are_per_workspace(inbox: InboxStore) -> None:
    a, b = entry(workspace="a", fingerprint="fa"), entry(workspace="b", fingerprint="fb")
    assert inbox.claim(a) == a and inbox.claim(b) == b
    inbox.finish("a", "c-1", {"status": "registered"})
    stored_b = inbox.get_entry("b", "c-1")
    assert stored_b == b and stored_b.reply is None
    stored_a = inbox.get_entry("a", "c-1")
    assert stored_a is not None and stored_a.reply == {"status": "registered"}


@pytest.mark.parametrize("correlation_id", ["a/b", "a?b", "a#b", "a%2Fb", "a:b", "x/y?z#w%:v", "%", "a\\b"])
def test_correlation_ids_with_special_characters(inbox: InboxStore, correlation_id: str) -> None:
    # '%2F' must not meet 'a/b', nor any id another one: each is claimed on its own
    others = ["a/b", "a%2Fb", "a%252Fb"]
    mine = entry(correlation_id, "mine")
    assert inbox.claim(mine) == mine
    for other in others:
        if other != correlation_id:
            assert inbox.claim(entry(other, f"other-{other}")).fingerprint == f"other-{other}"
    assert inbox.get_entry(WS, correlation_id) == mine
    assert inbox.finish(WS, correlation_id, {"ok": True}) is not None
    inbox.wait_for(waiter("b-1", correlation_id))
    assert inbox.take_waiter("b-1", WS, correlation_id) == waiter("b-1", correlation_id)


def test_waiting_twice_stores_once(inbox: InboxStore) -> None:
    inbox.wait_for(waiter("b-1", "c-1"))
    inbox.wait_for(waiter("b-1", "c-1"))
    assert inbox.take_waiters("b-1") == [waiter("b-1", "c-1")]


def test_take_waiters_returns_a_builds_waiters_once(inbox: InboxStore) -> None:
    mine = [waiter("b-1", "c-1"), waiter("b-1", "c-2", reply_to="https://example.com/hook"),
            waiter("b-1", "c-1", workspace="other")]
    for w in mine:
        inbox.wait_for(w)
    inbox.wait_for(waiter("b-2", "c-1"))
    taken = inbox.take_waiters("b-1")
    assert sorted(taken, key=repr) == sorted(mine, key=repr)
    assert inbox.take_waiters("b-1") == []
    assert inbox.take_waiters("never") == []
    assert inbox.take_waiters("b-2") == [waiter("b-2", "c-1")]


def test_concurrent_takes_return_each_waiter_exactly_once(inbox: InboxStore) -> None:
    stored = [waiter("b-1", f"c-{i}") for i in range(12)]
    for w in stored:
        inbox.wait_for(w)
    start = Barrier(4)

    def take(_: int) -> list[BuildWaiter]:
        start.wait()
        return inbox.take_waiters("b-1")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(take, range(4)))
    counts = Counter(w.correlation_id for result in results for w in result)
    assert counts == Counter({w.correlation_id: 1 for w in stored})
    assert inbox.take_waiters("b-1") == []


def test_take_waiter_returns_it_once(inbox: InboxStore) -> None:
    w = waiter("b-1", "c-1")
    inbox.wait_for(w)
    inbox.wait_for(waiter("b-1", "c-2"))
    assert inbox.take_waiter("b-1", WS, "c-1") == w
    assert inbox.take_waiter("b-1", WS, "c-1") is None
    assert inbox.take_waiter("b-1", "other", "c-2") is None and inbox.take_waiter("b-9", WS, "c-2") is None
    assert inbox.take_waiters("b-1") == [waiter("b-1", "c-2")]


def test_concurrent_take_waiter_gives_it_to_one_caller(inbox: InboxStore) -> None:
    w = waiter("b-1", "c-1")
    inbox.wait_for(w)
    start = Barrier(4)

    def take(_: int) -> BuildWaiter | None:
        start.wait()
        return inbox.take_waiter("b-1", WS, "c-1")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(take, range(4)))
    assert [r for r in results if r is not None] == [w]


def test_pending_waiters_span_builds_and_stay_until_taken(inbox: InboxStore) -> None:
    owed = [waiter("b-1", "c-1"), waiter("b-2", "c-2"), waiter("b-2", "c-3", workspace="ws-2")]
    for one in owed:
        inbox.wait_for(one)
    assert sorted(inbox.pending_waiters(10), key=str) == sorted(owed, key=str)
    assert len(inbox.pending_waiters(2)) == 2
    assert inbox.take_waiter("b-2", WS, "c-2") is not None
    assert sorted(inbox.pending_waiters(10), key=str) == sorted([owed[0], owed[2]], key=str)


def test_an_entry_keeps_its_next_version_mark(inbox: InboxStore) -> None:
    stored = inbox.claim(entry("marked").model_copy(update={"next_version": 7}))
    assert stored.next_version == 7
    finished = inbox.finish(WS, "marked", {"status": "registered"})
    assert finished is not None and finished.next_version == 7
    assert inbox.get_entry(WS, "marked") == finished


def test_check_answers(inbox: InboxStore) -> None:
    inbox.check()
