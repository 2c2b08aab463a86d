"""The deployment store on Cosmos DB: container `deployments`, one document per deployment in its workspace's
partition (`/workspace`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from azure.cosmos import DatabaseProxy

from shared.adapters.cosmos_common import Conflict, Doc, Docs, backoff, connect, decode_cursor, encode_cursor
from shared.domain.scans import Deployment
from shared.ports import Page
from shared.settings import Settings

_LIST = ("SELECT VALUE c.record FROM c WHERE c.workspace = @ws AND c.type = 'deployment' AND c.name > @after "
         "{flag}ORDER BY c.name")
_EACH = "SELECT VALUE c.record FROM c WHERE c.type = 'deployment'"
_EACH_PAGE = 100


class CosmosDeploymentStore:
    """The DeploymentStore port on Cosmos DB.

    `get` is a point read; `put` reads then writes conditionally (create, or replace on the etag), so the stored
    `created_at` survives a concurrent replace; a listing is one single-partition query ordered by name, paged
    by keyset: the cursor is the last name of the page, encoded, so it never depends on a continuation token."""

    def __init__(self, database: DatabaseProxy) -> None:
        self.operations: Counter[str] = Counter()
        self._docs = Docs(database.get_container_client("deployments"), self.operations)

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosDeploymentStore:
        """The store the settings describe."""
        return cls(connect(settings))

    def check(self) -> None:
        self._docs.check()

    def put(self, deployment: Deployment) -> Deployment:
        doc_id, attempt = _doc_id(deployment.name), 0
        while True:
            existing = self._docs.read(doc_id, deployment.workspace)
            try:
                if existing is None:
                    self._docs.create(_doc(deployment))
                    return deployment
                created_at = Deployment.model_validate(existing["record"]).created_at
                stored = deployment.model_copy(update={"created_at": created_at})
                self._docs.replace({**existing, **_doc(stored)})  # the read's `_etag` makes it conditional
                return stored
            except Conflict:  # another writer came between the read and the write: read again
                attempt += 1
                backoff(attempt)

    def get(self, workspace: str, name: str) -> Deployment | None:
        doc = self._docs.read(_doc_id(name), workspace)
        return None if doc is None else Deployment.model_validate(doc["record"])

    def list_deployments(self, workspace: str, *, top: int, cursor: str | None,
                         needs_redeploy: bool | None = None) -> Page[Deployment]:
        if top < 1:
            raise ValueError(f"a page holds at least one item, not {top}")
        after = decode_cursor(cursor) or ""  # ValueError for a cursor this store did not hand out
        params: dict[str, Any] = {"@ws": workspace, "@after": after}
        flag = ""
        if needs_redeploy is not None:
            flag, params["@flag"] = "AND c.needs_redeploy = @flag ", needs_redeploy
        # One more than asked tells whether another page follows; each page is a fresh query after the last name.
        items, _ = self._docs.page(_LIST.format(flag=flag), params, pk=workspace, top=top + 1, cursor=None)
        page = [Deployment.model_validate(item) for item in items[:top]]
        return Page(page, encode_cursor(page[-1].name) if len(items) > top else None)

    def delete(self, workspace: str, name: str) -> bool:
        doc_id = _doc_id(name)
        if self._docs.read(doc_id, workspace) is None:
            return False
        self._docs.delete(doc_id, workspace)
        return True

    def each(self) -> Iterator[Deployment]:
        cursor: str | None = None
        while True:  # a page at a time across every partition: the scan's input, not a request path
            items, cursor = self._docs.page(_EACH, {}, pk=None, top=_EACH_PAGE, cursor=cursor)
            for item in items:
                yield Deployment.model_validate(item)
            if cursor is None:
                return


def _doc(deployment: Deployment) -> Doc:
    return {"id": _doc_id(deployment.name), "workspace": deployment.workspace, "type": "deployment",
            "name": deployment.name, "needs_redeploy": deployment.needs_redeploy,
            "record": deployment.model_dump(mode="json")}


def _doc_id(name: str) -> str:
    """The name, with the characters Cosmos ids may not hold (and '%') escaped; one too long for an id is replaced
    by its digest (the name stays in the body)."""
    escaped = "".join(f"%{ord(c):02X}" if c in "/\\?#%" else c for c in name)
    return escaped if len(escaped) <= 200 else f"~{hashlib.sha256(name.encode()).hexdigest()}"
