"""The DeploymentStore contract, run against the fake, SQLite and Cosmos DB (the emulator)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.cosmos_deployments import CosmosDeploymentStore
from shared.adapters.cosmos_emulator import CosmosEmulator
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_deployments import SqliteDeploymentStore
from shared.domain.scans import Deployment
from shared.ports import DeploymentStore, Page
from tests.contract.store_backends import QUIET, STORES, WORKSPACE, cosmos_running, fresh_database
from tests.fakes.deployments import FakeDeploymentStore

pytestmark = QUIET
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture(scope="module")
def cosmos() -> Iterator[CosmosEmulator]:
    with cosmos_running() as emulator:
        yield emulator


def make_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> DeploymentStore:
    if kind == "fake":
        return FakeDeploymentStore()
    if kind == "sqlite":
        return SqliteDeploymentStore(Database(folder / "store.db"))
    return CosmosDeploymentStore(fresh_database(request.getfixturevalue("cosmos")))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DeploymentStore:
    return make_store(request.param, tmp_path, request)


def deployment(name: str, *, workspace: str = WORKSPACE, version: str = "1", at: datetime = T0,
               needs_redeploy: bool = False, digest: str = "a") -> Deployment:
    return Deployment(workspace=workspace, name=name, environment_name="env", environment_version=version,
                      image_digest="sha256:" + digest * 64, endpoint=f"{name}-endpoint", kind="online",
                      needs_redeploy=needs_redeploy, redeploy_reason="base moved" if needs_redeploy else None,
                      created_at=at, updated_at=at)


def every_page(fetch: Callable[[str | None], Page[Deployment]], top: int) -> list[Page[Deployment]]:
    """Follow cursors to the end."""
    pages = [fetch(None)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 50, "the cursors do not end"
        pages.append(fetch(pages[-1].next_cursor))
    assert all(len(page.items) <= top for page in pages)
    return pages


def names(pages: list[Page[Deployment]]) -> list[str]:
    return [d.name for page in pages for d in page.items]


def test_put_creates_and_get_reads_it_back(store: DeploymentStore) -> None:
    first = deployment("web")
    assert store.put(first) == first
    assert store.get(WORKSPACE, "web") == first
    assert store.get(WORKSPACE, "Web") is None  # names are case-sensitive as stored
    assert store.get("ws-2", "web") is None
    assert store.get(WORKSPACE, "nothing") is None


def test_put_replaces_but_keeps_created_at(store: DeploymentStore) -> None:
    store.put(deployment("web"))
    later = T0 + timedelta(hours=1)
    replacement = deployment("web", version="2", at=later, needs_redeploy=True, digest="b")
    stored = store.put(replacement)
    assert stored == replacement.model_copy(update={"created_at": T0})
    assert store.get(WORKSPACE, "web") == stored
    assert stored.updated_at == later and stored.environment == "env:2" and stored.needs_redeploy
    assert stored.redeploy_reason == "base moved" and stored.image_digest == "sha256:" + "b" * 64
    cleared = store.put(deployment("web", at=later + timedelta(hours=1)))  # a redeploy clears the flag
    assert not cleared.needs_redeploy and cleared.redeploy_reason is None and cleared.created_at == T0


def test_concurrent_puts_keep_the_first_created_at(store: DeploymentStore) -> None:
    store.put(deployment("busy"))
    with ThreadPoolExecutor(max_workers=10) as pool:
        stored = list(pool.map(lambda i: store.put(deployment("busy", version=str(i), at=T0 + timedelta(
            seconds=i + 1))), range(20)))
    assert all(d.created_at == T0 for d in stored)
    final = store.get(WORKSPACE, "busy")
    assert final is not None and final.created_at == T0 and final in stored


def test_list_pages_by_name_with_the_redeploy_filter(store: DeploymentStore) -> None:
    for i in (4, 0, 6, 2, 5, 1, 3):
        store.put(deployment(f"dep-{i}", needs_redeploy=i % 2 == 1))
    store.put(deployment("dep-9", workspace="ws-2"))
    pages = every_page(lambda c: store.list_deployments(WORKSPACE, top=3, cursor=c), top=3)
    assert names(pages) == [f"dep-{i}" for i in range(7)] and [len(p.items) for p in pages] == [3, 3, 1]
    flagged = every_page(lambda c: store.list_deployments(WORKSPACE, top=2, cursor=c, needs_redeploy=True), top=2)
    assert names(flagged) == ["dep-1", "dep-3", "dep-5"]
    assert all(d.needs_redeploy for page in flagged for d in page.items)
    unflagged = every_page(lambda c: store.list_deployments(WORKSPACE, top=4, cursor=c, needs_redeploy=False),
                           top=4)
    assert names(unflagged) == ["dep-0", "dep-2", "dep-4", "dep-6"] and len(unflagged) == 1  # exact: no empty page
    whole = store.list_deployments(WORKSPACE, top=7, cursor=None)
    assert names([whole]) == names(pages) and whole.next_cursor is None
    assert store.list_deployments("ws-3", top=3, cursor=None) == Page([], None)


def test_a_cursor_survives_changes_between_pages(store: DeploymentStore) -> None:
    for name in ("a", "b", "c", "d"):
        store.put(deployment(name))
    first = store.list_deployments(WORKSPACE, top=2, cursor=None)
    assert names([first]) == ["a", "b"] and first.next_cursor is not None
    store.delete(WORKSPACE, "b")
    store.put(deployment("bb"))
    store.put(deployment("0"))  # before the cursor: not seen on the later pages
    second = store.list_deployments(WORKSPACE, top=2, cursor=first.next_cursor)
    assert names([second]) == ["bb", "c"] and second.next_cursor is not None
    third = store.list_deployments(WORKSPACE, top=2, cursor=second.next_cursor)
    assert third == Page([deployment("d")], None)
    every = every_page(lambda c: store.list_deployments(WORKSPACE, top=2, cursor=c), top=2)
    assert names(every) == ["0", "a", "bb", "c", "d"]


def test_delete(store: DeploymentStore) -> None:
    store.put(deployment("web"))
    store.put(deployment("web", workspace="ws-2"))
    assert not store.delete(WORKSPACE, "nothing")
    assert store.delete(WORKSPACE, "web")
    assert store.get(WORKSPACE, "web") is None and not store.delete(WORKSPACE, "web")
    assert store.list_deployments(WORKSPACE, top=5, cursor=None) == Page([], None)
    assert store.get("ws-2", "web") is not None  # other workspaces keep theirs
    again = store.put(deployment("web", at=T0 + timedelta(days=1)))
    assert again.created_at == T0 + timedelta(days=1)  # a new deployment, not the deleted one


def test_each_reads_every_workspace(store: DeploymentStore) -> None:
    assert list(store.each()) == []
    expected = {(f"ws-{i % 3}", f"dep-{i:03d}") for i in range(105)}  # past a batch of 100
    for workspace, name in expected:
        store.put(deployment(name, workspace=workspace))
    seen = [(d.workspace, d.name) for d in store.each()]
    assert len(seen) == len(expected) and set(seen) == expected


def test_check_answers(store: DeploymentStore) -> None:
    store.check()


@pytest.mark.parametrize("kind", ["fake", "sqlite"])
def test_check_fails_when_the_backend_is_gone(kind: str, tmp_path: Path) -> None:
    if kind == "fake":
        fake = FakeDeploymentStore()
        fake.down = True
        broken: DeploymentStore = fake
    else:
        sqlite = SqliteDeploymentStore(Database(tmp_path / "store.db"))
        sqlite.database.connection().close()
        broken = sqlite
    with pytest.raises(Exception):  # noqa: B017 -- any error: the port lets each backend say it its own way
        broken.check()


def test_sqlite_refuses_a_cursor_it_did_not_hand_out(tmp_path: Path) -> None:
    store = SqliteDeploymentStore(Database(tmp_path / "store.db"))
    with pytest.raises(ValueError):
        store.list_deployments(WORKSPACE, top=2, cursor="a")  # one base64 character can encode nothing


@pytest.mark.integration
def test_cosmos_hot_paths_are_point_reads_and_one_query(cosmos: CosmosEmulator) -> None:
    store = CosmosDeploymentStore(fresh_database(cosmos))
    for name in ("a", "b", "c"):
        store.put(deployment(name))
    store.operations.clear()
    assert store.get(WORKSPACE, "b") is not None
    assert store.operations == {"read": 1}
    store.operations.clear()
    page = store.list_deployments(WORKSPACE, top=2, cursor=None)
    assert names([page]) == ["a", "b"] and store.operations == {"query": 1}
    store.operations.clear()
    assert names([store.list_deployments(WORKSPACE, top=2, cursor=page.next_cursor)]) == ["c"]
    assert store.operations == {"query": 1}


@pytest.mark.integration
def test_cosmos_ids_escape_what_cosmos_refuses(cosmos: CosmosEmulator) -> None:
    store = CosmosDeploymentStore(fresh_database(cosmos))
    odd = ["a/b", "a%2Fb", "q?#", "x" * 300]
    for name in odd:
        store.put(deployment(name))
    assert all(store.get(WORKSPACE, name) == deployment(name) for name in odd)
    assert sorted(names([store.list_deployments(WORKSPACE, top=10, cursor=None)])) == sorted(odd)
