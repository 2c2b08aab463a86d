"""The EnvironmentStore contract for Azure ML's containers and mutable version fields: fake, SQLite, Cosmos DB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.cosmos_emulator import CosmosEmulator
from shared.adapters.cosmos_store import CosmosStore
from shared.domain.records import Container, EnvironmentRecord
from shared.ports import EnvironmentStore, Page
from tests.contract.store_backends import (
    QUIET,
    STORES,
    WORKSPACE,
    cosmos_running,
    environment,
    fresh_database,
    make_environment_store,
)

pytestmark = QUIET


@pytest.fixture(scope="module")
def cosmos() -> Iterator[CosmosEmulator]:
    with cosmos_running() as emulator:
        yield emulator


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EnvironmentStore:
    return make_environment_store(request.param, tmp_path, request)


def edited(record: EnvironmentRecord, **changes: object) -> EnvironmentRecord:
    """`record` with other description, tags or properties (and image, which update_version must not take)."""
    archived = bool(changes.pop("archived", record.archived))
    definition = record.definition.model_copy(update=changes)
    return record.model_copy(update={"archived": archived, "description": record.description.model_copy(
        update={"definition": definition})})


def container(store: EnvironmentStore, name: str) -> tuple[str, str, bool] | None:
    found = store.container(WORKSPACE, name)
    return None if found is None else (found.latest_version, found.next_version, found.archived)


def test_update_version_changes_the_mutable_fields_only(store: EnvironmentStore) -> None:
    stored = environment("env", "1")
    store.insert(stored)
    store.insert(environment("env", "2"))
    change = edited(stored, description="new", tags={"a": "b"}, properties={"p": "q"}, image="other:1",
                    archived=True)
    updated = store.update_version(change)
    assert updated is not None and updated == store.get(WORKSPACE, "env", "1")
    assert (updated.definition.description, updated.definition.tags, updated.definition.properties) == \
        ("new", {"a": "b"}, {"p": "q"})
    assert updated.archived and updated.definition.image == stored.definition.image  # the image never changes
    assert updated.description.hash == stored.description.hash and updated.created_at == stored.created_at
    latest = store.latest(WORKSPACE, "env")
    assert latest is not None and latest.version == "2"
    assert store.update_version(edited(updated, archived=False, description="live")) is not None
    store.set_archived(WORKSPACE, "env", "2", True)
    latest = store.latest(WORKSPACE, "env")  # the latest reads the updated record, not a stale copy
    assert latest is not None and (latest.version, latest.definition.description) == ("1", "live")
    assert store.update_version(environment("env", "404")) is None
    assert store.update_version(environment("missing", "1")) is None


def test_a_container_has_the_newest_version_the_next_and_whether_all_are_archived(store: EnvironmentStore) -> None:
    assert store.container(WORKSPACE, "env") is None
    store.insert(environment("env", "1"))
    assert container(store, "env") == ("1", "2", False)
    store.insert(environment("env", "7"))
    store.insert(environment("env", "beta"))
    assert container(store, "env") == ("beta", "8", False)  # the newest created; the next integer
    assert store.insert_next(environment("env")).version == "8"
    assert container(store, "env") == ("8", "9", False)
    for version in ("1", "7", "beta"):
        store.set_archived(WORKSPACE, "env", version, True)
    assert container(store, "env") == ("8", "9", False)
    store.set_archived(WORKSPACE, "env", "8", True)
    assert container(store, "env") == ("8", "9", True)  # archived versions are still the newest
    assert not store.insert(environment("env", "1"))  # inserting an old one again changes nothing
    assert container(store, "env") == ("8", "9", True)
    store.set_archived(WORKSPACE, "env", "7", False)
    assert container(store, "env") == ("8", "9", False)
    store.insert(environment("words", "alpha"))
    assert container(store, "words") == ("alpha", "1", False)
    assert store.container("ws-2", "env") is None


def test_containers_page_by_name_with_the_archived_filter(store: EnvironmentStore) -> None:
    for i in range(5):
        store.insert(environment(f"env-{i}", "1"))
        store.insert(environment(f"env-{i}", "2"))
    for name in ("env-1", "env-3"):
        store.set_archived(WORKSPACE, name, "1", True)
        store.set_archived(WORKSPACE, name, "2", True)
    store.set_archived(WORKSPACE, "env-4", "2", True)  # one live version left: active
    store.insert(environment("anon", "abc", anonymous=True))  # anonymous: never a listed container
    store.insert(environment("elsewhere", "1", workspace="ws-2"))

    def names(archived: bool | None, top: int) -> list[list[str]]:
        pages: list[Page[Container]] = [store.containers(WORKSPACE, archived=archived, top=top, cursor=None)]
        while pages[-1].next_cursor is not None:
            assert len(pages) < 20
            pages.append(store.containers(WORKSPACE, archived=archived, top=top, cursor=pages[-1].next_cursor))
        return [[c.name for c in page.items] for page in pages]

    assert names(None, 2) == [["env-0", "env-1"], ["env-2", "env-3"], ["env-4"]]
    assert [n for page in names(False, 2) for n in page] == ["env-0", "env-2", "env-4"]
    assert [n for page in names(True, 1) for n in page] == ["env-1", "env-3"]
    listed = store.containers(WORKSPACE, archived=None, top=10, cursor=None).items
    assert [(c.name, c.latest_version, c.next_version, c.archived) for c in listed][3:] == \
        [("env-3", "2", "3", True), ("env-4", "2", "3", False)]
    assert store.containers("ws-3", archived=None, top=3, cursor=None) == Page([], None)


@pytest.mark.integration
def test_cosmos_heads_written_before_containers_existed_still_answer(cosmos: CosmosEmulator) -> None:
    database = fresh_database(cosmos)
    store = CosmosStore(database)
    for version in ("1", "2", "3"):
        store.insert(environment("env", version))
    heads = database.get_container_client("environments")
    head = heads.read_item("n:env", partition_key=WORKSPACE)
    old = {k: v for k, v in head.items() if k not in ("newest", "newest_key", "anonymous")}
    heads.replace_item("n:env", old)  # as an older envhub wrote it
    assert container(store, "env") == ("3", "4", False)  # found by a query instead
    assert not store.insert(environment("env", "1"))  # absorbing an old version again must not make it newest
    assert container(store, "env") == ("3", "4", False)
    assert [c.name for c in store.containers(WORKSPACE, archived=False, top=5, cursor=None).items] == ["env"]
    store.insert(environment("env", "4"))
    assert container(store, "env") == ("4", "5", False)
