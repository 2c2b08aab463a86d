"""Tokens and the audit log on Cosmos DB: containers `tokens` (one partition) and `audit` (per workspace)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from azure.cosmos import DatabaseProxy

from shared.adapters.cosmos_common import Conflict, Docs, backoff
from shared.domain.access import AuditEntry, TokenRecord
from shared.ports import Page

_TOKENS_PK = "tokens"  # a few hundred tokens at most: one partition keeps listing a single-partition query
_ALL_TOKENS = "SELECT VALUE c.record FROM c WHERE c.pk = @pk"
_WORKSPACE_TOKENS = "SELECT VALUE c.record FROM c WHERE c.pk = @pk AND c.workspace = @ws"
_ENTRIES = "SELECT VALUE c.record FROM c WHERE c.workspace = @ws ORDER BY c.key DESC"


class CosmosTokenStore:
    """The TokenStore port: a point read by token id on every authenticated request."""

    def __init__(self, database: DatabaseProxy) -> None:
        self.operations: Counter[str] = Counter()
        self._docs = Docs(database.get_container_client("tokens"), self.operations)

    def check(self) -> None:
        self._docs.check()

    def add(self, token: TokenRecord) -> None:
        self._docs.create({"id": token.id, "pk": _TOKENS_PK, "workspace": token.workspace,
                           "record": token.model_dump(mode="json")})

    def get(self, token_id: str) -> TokenRecord | None:
        doc = self._docs.read(token_id, _TOKENS_PK)
        return None if doc is None else TokenRecord.model_validate(doc["record"])

    def list_tokens(self, workspace: str | None) -> list[TokenRecord]:
        query, params = (_ALL_TOKENS, {"@pk": _TOKENS_PK}) if workspace is None else (
            _WORKSPACE_TOKENS, {"@pk": _TOKENS_PK, "@ws": workspace})
        found = [TokenRecord.model_validate(r) for r in self._docs.all(query, params, pk=_TOKENS_PK)]
        return sorted(found, key=lambda t: (t.created_at, t.id))  # a few hundred at most: sorted here

    def revoke(self, token_id: str, at: datetime) -> TokenRecord | None:
        attempt = 0
        while True:
            doc = self._docs.read(token_id, _TOKENS_PK)
            if doc is None:
                return None
            token = TokenRecord.model_validate(doc["record"])
            if token.revoked_at is not None:
                return token
            token = token.model_copy(update={"revoked_at": at})
            try:
                self._docs.replace({**doc, "record": token.model_dump(mode="json")})
                return token
            except Conflict:  # revoked (or changed) between the read and the write: read again
                attempt += 1
                backoff(attempt)


class CosmosAuditLog:
    """The AuditLog port: one document per entry, keyed by time then id so pages go newest first."""

    def __init__(self, database: DatabaseProxy) -> None:
        self.operations: Counter[str] = Counter()
        self._docs = Docs(database.get_container_client("audit"), self.operations)

    def check(self) -> None:
        self._docs.check()

    def append(self, entry: AuditEntry) -> None:
        self._docs.create({"id": entry.id, "workspace": entry.workspace,
                           "key": f"{entry.at.isoformat()}|{entry.id}", "record": entry.model_dump(mode="json")})

    def entries(self, workspace: str, *, top: int, cursor: str | None) -> Page[AuditEntry]:
        items, after = self._docs.page(_ENTRIES, {"@ws": workspace}, pk=workspace, top=top, cursor=cursor)
        return Page([AuditEntry.model_validate(i) for i in items], after)
