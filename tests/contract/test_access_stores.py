"""The TokenStore and AuditLog contracts, and EnvironmentStore.has_hash, on SQLite and Cosmos DB (the emulator)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.cosmos_access import CosmosAuditLog, CosmosTokenStore
from shared.adapters.cosmos_emulator import CosmosEmulator
from shared.adapters.sqlite_access import SqliteAuditLog, SqliteTokenStore
from shared.adapters.sqlite_db import Database
from shared.domain.access import AuditEntry, Role, TokenRecord, new_token, token_hash, token_id
from shared.ports import AuditLog, TokenStore
from tests.contract.store_backends import (
    QUIET,
    STORES,
    cosmos_running,
    environment,
    fresh_database,
    make_environment_store,
)

pytestmark = QUIET
BACKENDS = [p for p in STORES if p != "fake"]
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def cosmos() -> Iterator[CosmosEmulator]:
    with cosmos_running() as emulator:
        yield emulator


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[TokenStore, AuditLog]:
    if request.param == "sqlite":
        database = Database(tmp_path / "store.db")
        return SqliteTokenStore(database), SqliteAuditLog(database)
    db = fresh_database(request.getfixturevalue("cosmos"))
    return CosmosTokenStore(db), CosmosAuditLog(db)


def token(workspace: str | None, role: Role | None, *, at: datetime = T0) -> TokenRecord:
    digest = token_hash(new_token())
    return TokenRecord(id=token_id(digest), hash=digest, workspace=workspace, role=role, admin=workspace is None,
                       label="t", created_at=at, created_by="tests")


def test_tokens_are_found_by_id_listed_per_workspace_and_revoked_once(pair: tuple[TokenStore, AuditLog]) -> None:
    tokens, _ = pair
    admin, reader, other = token(None, None), token("a", Role.READER, at=T0 + timedelta(1)), token("b", Role.OWNER)
    for t in (admin, reader, other):
        tokens.add(t)
    assert tokens.get(reader.id) == reader and tokens.get("0" * 16) is None
    assert [t.id for t in tokens.list_tokens("a")] == [reader.id]
    assert {t.id for t in tokens.list_tokens(None)} == {admin.id, reader.id, other.id}
    later = T0 + timedelta(days=3)
    revoked = tokens.revoke(reader.id, later)
    assert revoked is not None and revoked.revoked_at == later
    again = tokens.revoke(reader.id, later + timedelta(days=1))
    assert again is not None and again.revoked_at == later  # the first revocation stands
    assert tokens.get(reader.id) == revoked and tokens.revoke("f" * 16, later) is None


def test_concurrent_revocations_agree(pair: tuple[TokenStore, AuditLog]) -> None:
    tokens, _ = pair
    t = token("a", Role.OWNER)
    tokens.add(t)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: tokens.revoke(t.id, T0 + timedelta(seconds=i)), range(8)))
    assert len({r.revoked_at for r in results if r is not None}) == 1


def test_audit_pages_newest_first_per_workspace(pair: tuple[TokenStore, AuditLog]) -> None:
    _, audit = pair
    for i in range(7):
        audit.append(AuditEntry(id=uuid.uuid4().hex, workspace="a", at=T0 + timedelta(seconds=i), who="w",
                                action=f"POST /x/{i}", status=201, request_id=f"r{i}"))
    audit.append(AuditEntry(id=uuid.uuid4().hex, workspace="b", at=T0, who="w", action="PUT /y", status=200,
                            request_id="rb"))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = audit.entries("a", top=3, cursor=cursor)
        assert len(page.items) <= 3
        seen += [e.action for e in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [f"POST /x/{i}" for i in reversed(range(7))]
    assert [e.request_id for e in audit.entries("b", top=10, cursor=None).items] == ["rb"]
    assert audit.entries("c", top=10, cursor=None).items == []


@pytest.mark.parametrize("kind", STORES)
def test_has_hash_is_per_workspace_and_counts_archived_and_anonymous(kind: str, tmp_path: Path,
                                                                     request: pytest.FixtureRequest) -> None:
    store = make_environment_store(kind, tmp_path, request)
    archived = environment("e", "1", archived=True)
    anonymous = environment("CliV2AnonymousEnvironment", "x", anonymous=True)
    store.insert(archived)
    store.insert(anonymous)
    assert store.has_hash(archived.workspace, archived.description.hash)
    assert store.has_hash(anonymous.workspace, anonymous.description.hash)
    assert not store.has_hash("elsewhere", archived.description.hash)
    assert not store.has_hash(archived.workspace, "0" * 64)
