"""The ScanStore contract, run against the fake, SQLite and Cosmos DB (the emulator)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shared.adapters import cosmos_scans
from shared.adapters.cosmos_emulator import CosmosEmulator
from shared.adapters.cosmos_scans import CosmosScanStore
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_scans import SqliteScanStore
from shared.domain.errors import NotFound, StaleRecord
from shared.domain.scans import Finding, FindingStatus, FindingType, RefFacts, Scan, ScanStatus, finding_id
from shared.ports import Page, ScanStore
from tests.contract.store_backends import (
    QUIET,
    STORES,
    WORKSPACE,
    cosmos_running,
    cosmos_settings,
    fresh_database,
    nowhere,
)
from tests.fakes.scans import FakeScanStore

pytestmark = QUIET
T = TypeVar("T")
REPOSITORY = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
PORTED = "localhost:5000/team/base"  # a registry with a port: ':' and '/' in the partition key
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cosmos() -> Iterator[CosmosEmulator]:
    with cosmos_running() as emulator:
        yield emulator


def make_scan_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> ScanStore:
    """A fresh, empty scan store of the given kind."""
    if kind == "fake":
        return FakeScanStore()
    if kind == "sqlite":
        return SqliteScanStore(Database(folder / "store.db"))
    return CosmosScanStore(fresh_database(request.getfixturevalue("cosmos")))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ScanStore:
    return make_scan_store(request.param, tmp_path, request)


@pytest.fixture
def cosmos_store(cosmos: CosmosEmulator) -> CosmosScanStore:
    return CosmosScanStore(fresh_database(cosmos))


def scan(scan_id: str, *, started_at: datetime = START, repositories: list[str] | None = None) -> Scan:
    return Scan(id=scan_id, trigger="api", started_at=started_at,
                repositories=repositories if repositories is not None else [REPOSITORY])


def finding(name: str, version: str = "1", kind: FindingType = FindingType.BASE_MOVED, *,
            base: str = f"{REPOSITORY}:latest", workspace: str = WORKSPACE,
            status: FindingStatus = FindingStatus.OPEN) -> Finding:
    return Finding(id=finding_id(workspace, name, version, kind, base), workspace=workspace, environment_name=name,
                   environment_version=version, type=kind, base_image=base, current="sha256:" + "0" * 64,
                   status=status, first_seen=START, last_seen=START, last_scan="scan-1")


def every_page(fetch: Callable[[str | None], Page[T]], top: int) -> list[T]:
    """Follow cursors to the end; every item of every page."""
    pages = [fetch(None)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 50, "the cursors do not end"
        pages.append(fetch(pages[-1].next_cursor))
    assert all(len(page.items) <= top for page in pages)
    return [item for page in pages for item in page.items]


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def order(findings: list[Finding]) -> list[tuple[str, str, str, str]]:
    return [(f.environment_name, f.environment_version, f.type.value, f.id) for f in findings]


# Scans


def test_scan_lifecycle(store: ScanStore) -> None:
    assert store.get_scan("scan-1") is None
    created = scan("scan-1", repositories=[REPOSITORY, PORTED])
    store.create_scan(created)
    assert store.get_scan("scan-1") == created
    with pytest.raises(StaleRecord):  # an id is a scan once
        store.create_scan(scan("scan-1"))
    facts = {REPOSITORY: {"20240101.v1": RefFacts(newer_tag="20240108.v1", newer_created=START),
                          "": RefFacts(digest=digest("latest"))}}
    one = store.update_scan(created.model_copy(update={"done": [REPOSITORY], "facts": facts}))
    assert one.revision == 1 and store.get_scan("scan-1") == one
    with pytest.raises(StaleRecord):  # written from the copy read before the update
        store.update_scan(created.model_copy(update={"errors": {PORTED: "401"}}))
    assert store.get_scan("scan-1") == one
    finished = store.update_scan(one.model_copy(update={
        "done": [REPOSITORY, PORTED], "errors": {PORTED: "401"}, "status": ScanStatus.FINISHED,
        "finished_at": START + timedelta(minutes=5), "new_findings": ["f-1"], "redeploys": ["ws-1/online"],
        "findings": [{"id": "f-1", "environment": "torch:1"}], "truncated": 2, "notified": True}))
    assert finished.revision == 2 and store.get_scan("scan-1") == finished
    with pytest.raises(NotFound):
        store.update_scan(scan("no-such-scan"))


def test_scans_list_newest_first_in_pages(store: ScanStore) -> None:
    assert store.list_scans(top=3, cursor=None) == Page([], None)
    ids = [f"scan-{i}" for i in range(7)]
    for i, scan_id in enumerate(ids):
        store.create_scan(scan(scan_id, started_at=START + timedelta(minutes=i % 5)))  # 5 and 6 tie with 0 and 1
    store.update_scan(scan("scan-2", started_at=START + timedelta(minutes=2)))  # an update keeps its place
    expected = ["scan-4", "scan-3", "scan-2", "scan-6", "scan-1", "scan-5", "scan-0"]
    assert [s.id for s in every_page(lambda cursor: store.list_scans(top=3, cursor=cursor), top=3)] == expected
    assert [s.id for s in every_page(lambda cursor: store.list_scans(top=7, cursor=cursor), top=7)] == expected
    first = store.list_scans(top=2, cursor=None)
    assert [s.id for s in first.items] == expected[:2] and first.next_cursor is not None
    store.create_scan(scan("scan-new", started_at=START + timedelta(hours=1)))  # newer than the listing: not in it
    rest = every_page(lambda cursor: store.list_scans(top=2, cursor=cursor or first.next_cursor), top=2)
    assert [s.id for s in rest] == expected[2:]
    named = store.get_scan("scan-2")
    assert named is not None and named.revision == 1


def test_twenty_workers_each_add_their_repository_once(store: ScanStore) -> None:
    repositories = [f"{REPOSITORY}-{i}" for i in range(20)]
    store.create_scan(scan("scan-1", repositories=repositories))
    losses = [0]
    start = threading.Barrier(20)

    def finish(repository: str) -> None:
        start.wait()
        attempt = 0
        while True:
            current = store.get_scan("scan-1")
            assert current is not None
            time.sleep(0.002)  # the worker's own work between its read and its write: others write meanwhile
            done = [*current.done, repository]
            status = ScanStatus.FINISHED if set(done) == set(current.repositories) else ScanStatus.RUNNING
            try:
                store.update_scan(current.model_copy(update={"done": done, "status": status,
                                                             "facts": {**current.facts, repository: {}}}))
                return
            except StaleRecord:
                losses[0] += 1
                attempt += 1
                time.sleep(0.001 * min(attempt, 20))

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(finish, repositories))
    final = store.get_scan("scan-1")
    assert final is not None
    assert sorted(final.done) == sorted(repositories)  # every repository, each exactly once
    assert sorted(final.facts) == sorted(repositories)
    assert losses[0] > 0  # the writers did collide: the retries, not luck, kept every repository
    assert final.revision == 20 and final.status is ScanStatus.FINISHED


# Findings


def test_findings_are_created_replaced_and_refused_when_stale(store: ScanStore) -> None:
    new = finding("torch")
    assert store.get_finding(WORKSPACE, new.id) is None
    created = store.put_finding(new)
    assert created.revision == 1 and store.get_finding(WORKSPACE, new.id) == created
    assert store.get_finding("ws-2", new.id) is None  # findings belong to a workspace
    with pytest.raises(StaleRecord):  # revision 0 says "new": it exists
        store.put_finding(new)
    acknowledged = store.put_finding(created.model_copy(update={"status": FindingStatus.ACKNOWLEDGED}))
    assert acknowledged.revision == 2 and store.get_finding(WORKSPACE, new.id) == acknowledged
    with pytest.raises(StaleRecord):  # written from the copy read before the acknowledgement
        store.put_finding(created.model_copy(update={"last_scan": "scan-2"}))
    with pytest.raises(StaleRecord):  # a revision the finding never had
        store.put_finding(acknowledged.model_copy(update={"revision": 7}))
    with pytest.raises(StaleRecord):  # an update of a finding that does not exist
        store.put_finding(finding("missing").model_copy(update={"revision": 1}))
    assert store.get_finding(WORKSPACE, new.id) == acknowledged
    assert store.get_finding(WORKSPACE, finding("missing").id) is None


def test_concurrent_writers_of_one_finding_revision_one_wins(store: ScanStore) -> None:
    def race(write: Finding, writers: int) -> list[Finding | StaleRecord]:
        start = threading.Barrier(writers)

        def put(_: int) -> Finding | StaleRecord:
            start.wait()
            try:
                return store.put_finding(write)
            except StaleRecord as error:
                return error

        with ThreadPoolExecutor(max_workers=writers) as pool:
            return list(pool.map(put, range(writers)))

    created = race(finding("torch"), 2)  # two scans open the same finding at once
    winners = [r for r in created if isinstance(r, Finding)]
    assert len(winners) == 1 and sum(isinstance(r, StaleRecord) for r in created) == 1
    replaced = race(winners[0].model_copy(update={"status": FindingStatus.RESOLVED}), 8)
    winners = [r for r in replaced if isinstance(r, Finding)]
    assert len(winners) == 1 and winners[0].revision == 2
    assert store.get_finding(WORKSPACE, winners[0].id) == winners[0]


def test_findings_list_in_pages_by_environment_then_type(store: ScanStore) -> None:
    made = [
        finding("torch", "2", FindingType.PATCH_AVAILABLE),
        finding("torch", "2", FindingType.BASE_MOVED),
        finding("torch", "10", FindingType.BASE_MOVED),  # versions order as text
        finding("torch", "2", FindingType.BASE_MOVED, base="python:3.11"),  # same type: ordered by id
        finding("sklearn", "1", FindingType.BASE_MISSING, status=FindingStatus.RESOLVED),
        finding("sklearn", "1", FindingType.REGISTRY_ERROR, status=FindingStatus.ACKNOWLEDGED),
        finding("tf", "3", FindingType.PATCH_AVAILABLE, status=FindingStatus.SNOOZED),
        finding("tf-gpu", "1", FindingType.BASE_MOVED),
        finding("torch", "2", FindingType.BASE_MOVED, workspace="ws-2"),
    ]
    for f in made:
        store.put_finding(f)
    mine = sorted((f for f in made if f.workspace == WORKSPACE),
                  key=lambda f: (f.environment_name, f.environment_version, f.type.value, f.id))
    listed = every_page(lambda cursor: store.list_findings(WORKSPACE, top=3, cursor=cursor), top=3)
    assert order(listed) == order(mine)
    assert all(f.revision == 1 for f in listed)
    assert order(every_page(lambda cursor: store.list_findings(WORKSPACE, top=8, cursor=cursor), top=8)) == order(mine)
    open_or_snoozed = frozenset({FindingStatus.OPEN, FindingStatus.SNOOZED})
    filtered = every_page(lambda cursor: store.list_findings(WORKSPACE, top=2, cursor=cursor,
                                                             statuses=open_or_snoozed), top=2)
    assert order(filtered) == order([f for f in mine if f.status in open_or_snoozed])
    resolved = store.list_findings(WORKSPACE, top=5, cursor=None, statuses=frozenset({FindingStatus.RESOLVED}))
    assert [f.environment_name for f in resolved.items] == ["sklearn"] and resolved.next_cursor is None
    assert store.list_findings(WORKSPACE, top=5, cursor=None, statuses=frozenset()).items == []
    assert order(store.list_findings("ws-2", top=5, cursor=None).items) == order(made[-1:])
    assert store.list_findings("ws-3", top=5, cursor=None) == Page([], None)


def test_findings_of_one_environment_version(store: ScanStore) -> None:
    made = [finding("torch", "2", FindingType.PATCH_AVAILABLE), finding("torch", "2"), finding("torch", "20"),
            finding("torch", "1"), finding("torch", "2", workspace="ws-2")]
    for f in made:
        store.put_finding(f)
    assert order(store.findings_of(WORKSPACE, "torch", "2")) == order([made[1], made[0]])
    assert order(store.findings_of("ws-2", "torch", "2")) == order(made[4:])
    assert store.findings_of(WORKSPACE, "torch", "3") == []
    assert store.findings_of(WORKSPACE, "Torch", "2") == []


# Tag digests


def test_digests_merge_per_repository(store: ScanStore) -> None:
    assert store.known_digests(REPOSITORY) == {}
    store.remember_digests(REPOSITORY, {"20240101.v1": digest("a"), "20240108.v1": digest("b")})
    store.remember_digests(REPOSITORY, {"20240115.v1": digest("c")})
    store.remember_digests(REPOSITORY, {})
    store.remember_digests(REPOSITORY, {"20240101.v1": digest("a"), "20240108.v1": digest("b2")})  # the last word
    store.remember_digests(PORTED, {"1.0": digest("p")})
    assert store.known_digests(REPOSITORY) == {"20240101.v1": digest("a"), "20240108.v1": digest("b2"),
                                               "20240115.v1": digest("c")}
    assert store.known_digests(PORTED) == {"1.0": digest("p")}
    assert store.known_digests("mcr.microsoft.com/azureml") == {}  # a prefix is another repository
    assert store.known_digests(f"{REPOSITORY}/child") == {}


def test_two_thousand_digests_round_trip(store: ScanStore) -> None:
    tags = {f"{20200101 + i}.v{i % 3}-cuda11.8-py3.{i % 4 + 8}": digest(str(i)) for i in range(2000)}
    store.remember_digests(REPOSITORY, tags)
    more = {f"extra-{i}": digest(f"x{i}") for i in range(30)}
    store.remember_digests(REPOSITORY, {**more, **dict(list(tags.items())[:100])})  # mostly known already
    assert store.known_digests(REPOSITORY) == {**tags, **more}


def test_concurrent_remembers_of_one_repository_keep_every_tag(store: ScanStore) -> None:
    def remember(writer: int) -> None:
        store.remember_digests(REPOSITORY, {f"w{writer}-t{i}": digest(f"{writer}.{i}") for i in range(50)})

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(remember, range(8)))
    assert store.known_digests(REPOSITORY) == {f"w{w}-t{i}": digest(f"{w}.{i}") for w in range(8) for i in range(50)}


# Probes


def test_check_answers(store: ScanStore) -> None:
    store.check()


@pytest.mark.parametrize("kind", ["fake", "sqlite"])
def test_check_fails_when_the_backend_is_gone(kind: str, tmp_path: Path) -> None:
    if kind == "fake":
        fake = FakeScanStore()
        fake.down = True
        broken: ScanStore = fake
    else:
        sqlite = SqliteScanStore(Database(tmp_path / "store.db"))
        sqlite.database.connection().close()  # this thread's connection, as if the file had gone away
        broken = sqlite
    with pytest.raises(Exception):  # noqa: B017 -- any error: the port lets each backend say it its own way
        broken.check()


# Cosmos DB's costs


@pytest.mark.integration
def test_cosmos_from_settings_fails_fast_where_nothing_listens() -> None:
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017
        CosmosScanStore.from_settings(cosmos_settings(nowhere(), create=False)).check()
    assert time.monotonic() - started < 5


@pytest.mark.integration
def test_cosmos_digests_take_few_operations(cosmos_store: CosmosScanStore) -> None:
    tags = {f"{20200101 + i}.v1": digest(str(i)) for i in range(2000)}
    cosmos_store.remember_digests(REPOSITORY, tags)
    assert cosmos_store.operations == {"query": 1, "create": 16}  # one chunk per bucket
    cosmos_store.operations.clear()
    assert cosmos_store.known_digests(REPOSITORY) == tags
    assert cosmos_store.operations == {"query": 1}  # one single-partition query, whatever the number of tags
    cosmos_store.operations.clear()
    cosmos_store.remember_digests(REPOSITORY, {"20200101.v1": tags["20200101.v1"]})  # known: nothing to write
    assert cosmos_store.operations == {"query": 1}
    cosmos_store.operations.clear()
    cosmos_store.remember_digests(REPOSITORY, {"new": digest("new")})
    assert cosmos_store.operations == {"query": 1, "replace": 1}


@pytest.mark.integration
def test_cosmos_digest_chunks_chain_when_full(cosmos: CosmosEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cosmos_scans, "_CHUNK_BYTES", 4096)  # ~40 tags a chunk: each bucket becomes a chain
    database = fresh_database(cosmos)
    store = CosmosScanStore(database)
    tags = {f"{20200101 + i}.v1": digest(str(i)) for i in range(2000)}
    store.remember_digests(REPOSITORY, dict(list(tags.items())[:1500]))
    store.remember_digests(REPOSITORY, {**dict(list(tags.items())[1400:]), "20200101.v1": digest("moved")})
    store.operations.clear()
    assert store.known_digests(REPOSITORY) == {**tags, "20200101.v1": digest("moved")}
    assert store.operations["query"] <= 2  # ~60 chunks: one page (or two), never a read per tag
    chunks: list[dict[str, Any]] = list(database.get_container_client("tags").query_items(
        "SELECT * FROM c WHERE c.repository = @r", parameters=[{"name": "@r", "value": REPOSITORY}],
        partition_key=REPOSITORY))
    assert len(chunks) > 16 and max(len(chunk["entries"]) for chunk in chunks) <= 4096
    for bucket in {chunk["bucket"] for chunk in chunks}:  # each chain is numbered from 0 without gaps
        numbers = sorted(chunk["n"] for chunk in chunks if chunk["bucket"] == bucket)
        assert numbers == list(range(len(numbers)))


@pytest.mark.integration
def test_cosmos_updates_after_reads_are_single_writes(cosmos_store: CosmosScanStore) -> None:
    cosmos_store.create_scan(scan("scan-1"))
    cosmos_store.operations.clear()
    current = cosmos_store.get_scan("scan-1")
    assert current is not None
    cosmos_store.update_scan(current.model_copy(update={"done": [REPOSITORY]}))
    assert cosmos_store.operations == {"read": 1, "replace": 1}  # the etag read with the scan is used
    cosmos_store.operations.clear()
    with pytest.raises(StaleRecord):
        cosmos_store.update_scan(current)
    assert cosmos_store.operations == {"read": 1}
    created = cosmos_store.put_finding(finding("torch"))
    cosmos_store.operations.clear()
    [listed] = cosmos_store.findings_of(WORKSPACE, "torch", "1")
    assert listed == created
    cosmos_store.put_finding(listed.model_copy(update={"last_scan": "scan-2"}))
    assert cosmos_store.operations == {"query": 1, "replace": 1}


@pytest.mark.integration
def test_cosmos_another_process_write_is_seen_as_stale(cosmos: CosmosEmulator) -> None:
    database = fresh_database(cosmos)
    mine, theirs = CosmosScanStore(database), CosmosScanStore(database)  # two processes, two etag memories
    mine.create_scan(scan("scan-1"))
    current = mine.get_scan("scan-1")
    assert current is not None
    theirs.update_scan(current.model_copy(update={"done": ["elsewhere"]}))
    with pytest.raises(StaleRecord):  # the etag remembered at revision 0 no longer matches
        mine.update_scan(current.model_copy(update={"done": [REPOSITORY]}))
    created = mine.put_finding(finding("torch"))
    theirs.put_finding(created.model_copy(update={"status": FindingStatus.RESOLVED}))
    with pytest.raises(StaleRecord):
        mine.put_finding(created.model_copy(update={"status": FindingStatus.ACKNOWLEDGED}))
    stored = theirs.get_finding(WORKSPACE, created.id)
    assert stored is not None and stored.status is FindingStatus.RESOLVED and stored.revision == 2
