"""Cosmos DB plumbing shared by the stores: the client from settings, and a container wrapper that counts calls."""

from __future__ import annotations

import base64
import binascii
import contextlib
import random
import re
import threading
import time
import warnings
from collections import Counter
from typing import Any, cast
from urllib.parse import urlparse

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.paging import PageIterator
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)
from urllib3.exceptions import InsecureRequestWarning

from shared.adapters.azure_errors import outage_as
from shared.domain.errors import StoreUnavailable
from shared.settings import Settings, is_emulator

Doc = dict[str, Any]

# Every container envhub uses and its partition key path (infra/ declares the same in Azure).
CONTAINERS = {"environments": "/workspace", "jobs": "/workspace", "builds": "/pk", "deployments": "/workspace",
              "scans": "/pk", "findings": "/workspace", "tags": "/repository",
              "tokens": "/pk", "audit": "/workspace", "inbox": "/pk"}

# A request inside Azure takes milliseconds; these bound a dead or hung endpoint on the request path. The SDK's
# own retries still run, inside OPERATION_SECONDS.
CONNECT_SECONDS = 2
READ_SECONDS = 4
OPERATION_SECONDS = 5


def answered(where: str) -> contextlib.AbstractContextManager[None]:
    """An outage of Cosmos DB raises StoreUnavailable; answers the caller must see pass through."""
    return outage_as(StoreUnavailable, "Cosmos DB", where)


class Conflict(Exception):
    """A conditional write lost: the document exists (409), or changed or vanished since it was read (412, 404)."""


def connect(settings: Settings) -> DatabaseProxy:
    """The database the settings name; with `cosmos_create` (emulators only) its containers are made if missing."""
    if not settings.cosmos_endpoint:
        raise ValueError("the Cosmos DB store needs ENVHUB_COSMOS_ENDPOINT")
    credential: str | TokenCredential
    if settings.cosmos_key:
        credential = settings.cosmos_key  # Settings accepts a key only for an emulator endpoint
    else:
        from azure.identity import DefaultAzureCredential  # imported late: it is slow and only Azure needs it

        credential = DefaultAzureCredential()
    return open_database(settings.cosmos_endpoint, credential=credential, database=settings.cosmos_database,
                         create=settings.cosmos_create)


def open_database(endpoint: str, *, credential: str | TokenCredential, database: str, create: bool) -> DatabaseProxy:
    """A client with short timeouts; only an emulator's self-signed certificate goes unverified."""
    emulator = is_emulator(endpoint)
    if emulator:  # its certificate is self-signed by design: no warning per request about it
        host = re.escape(urlparse(endpoint).hostname or "")
        warnings.filterwarnings("ignore", f"Unverified HTTPS request is being made to host '{host}'",
                                InsecureRequestWarning)
    client = CosmosClient(endpoint, credential, connection_verify=not emulator,
                          connection_timeout=CONNECT_SECONDS, read_timeout=READ_SECONDS)
    if not create:
        return client.get_database_client(database)
    proxy = client.create_database_if_not_exists(database, timeout=OPERATION_SECONDS)
    for name, path in CONTAINERS.items():
        proxy.create_container_if_not_exists(name, partition_key=PartitionKey(path=path), timeout=OPERATION_SECONDS)
    return proxy


def backoff(attempt: int) -> None:
    """Wait a random while before retrying a lost conditional write, longer after each loss: contenders spread
    out instead of colliding again in lockstep."""
    time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.25)))  # noqa: S311 -- jitter, not a secret


def encode_cursor(token: str | None) -> str | None:
    """A continuation token as an opaque, URL-safe cursor."""
    return None if token is None else base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The continuation token inside a cursor; ValueError for one this store did not hand out."""
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ValueError("not a cursor this store handed out") from error


_COUNTING = threading.Lock()


class Docs:
    """One container's documents: point reads, conditional writes and single-page queries, each counted."""

    def __init__(self, container: ContainerProxy, operations: Counter[str]) -> None:
        self.container = container
        self.operations = operations
        self.name = f"cosmos:{container.id}"

    def _count(self, kind: str) -> None:
        with _COUNTING:  # Counter's += is a read-modify-write; the benchmark wants exact figures under threads
            self.operations[kind] += 1

    def read(self, doc_id: str, pk: str) -> Doc | None:
        """A point read; None when absent."""
        self._count("read")
        with answered(self.name):
            try:
                return dict(self.container.read_item(doc_id, partition_key=pk, timeout=OPERATION_SECONDS))
            except CosmosResourceNotFoundError:
                return None

    def create(self, doc: Doc) -> Doc:
        """Create `doc`; Conflict when its id is taken in its partition."""
        self._count("create")
        with answered(self.name):
            try:
                return dict(self.container.create_item(_body(doc), timeout=OPERATION_SECONDS))
            except CosmosResourceExistsError as error:
                raise Conflict(doc["id"]) from error

    def create_once(self, doc: Doc, pk: str) -> Doc:
        """`create`, for a caller that must not write twice: a dropped connection (StoreUnavailable), or a
        Conflict after the SDK resent the request, may hide that Cosmos DB made the write, so a read decides.
        The same document found there is ours; another one is a Conflict; none re-raises the outage."""
        try:
            return self.create(doc)
        except (Conflict, StoreUnavailable) as error:
            found = self.read(doc["id"], pk)
            if found is not None and _body(found) == _body(doc):
                return found
            if found is not None:
                raise Conflict(doc["id"]) from error
            raise

    def replace(self, doc: Doc) -> Doc:
        """Replace `doc` only if it is unchanged since read (its `_etag`); Conflict otherwise."""
        self._count("replace")
        with answered(self.name):
            try:
                return dict(self.container.replace_item(doc["id"], _body(doc), etag=doc["_etag"],
                                                        match_condition=MatchConditions.IfNotModified,
                                                        timeout=OPERATION_SECONDS))
            except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError) as error:
                raise Conflict(doc["id"]) from error

    def delete(self, doc_id: str, pk: str) -> None:
        """Delete a document if it exists."""
        self._count("delete")
        with answered(self.name), contextlib.suppress(CosmosResourceNotFoundError):
            self.container.delete_item(doc_id, partition_key=pk, timeout=OPERATION_SECONDS)

    def page(self, query: str, params: dict[str, Any], *, pk: str | None, top: int,
             cursor: str | None) -> tuple[list[Any], str | None]:
        """Up to `top` results from `cursor` on, and the cursor after them. Cosmos may answer with short pages,
        so this asks again for the rest until `top` arrive or the results end."""
        if top < 1:
            raise ValueError(f"a page holds at least one item, not {top}")
        token = decode_cursor(cursor)
        scope: dict[str, Any] = {"enable_cross_partition_query": True} if pk is None else {"partition_key": pk}
        found: list[Any] = []
        while True:
            self._count("query")
            with answered(self.name):
                pages = cast(PageIterator[Any], self.container.query_items(
                    query, parameters=[{"name": k, "value": v} for k, v in params.items()],
                    max_item_count=top - len(found), timeout=OPERATION_SECONDS, **scope).by_page(token))
                found.extend(next(pages, []))
                token = pages.continuation_token
            if token is None or len(found) >= top:
                return found, encode_cursor(token)

    def all(self, query: str, params: dict[str, Any], *, pk: str | None, page_size: int = 100) -> list[Any]:
        """Every result, a page at a time."""
        found: list[Any] = []
        cursor: str | None = None
        while True:
            items, cursor = self.page(query, params, pk=pk, top=page_size, cursor=cursor)
            found.extend(items)
            if cursor is None:
                return found

    def check(self) -> None:
        """Read the container's properties: raises when Cosmos DB does not answer."""
        self._count("read")
        with answered(self.name):
            self.container.read(timeout=OPERATION_SECONDS)


def _body(doc: Doc) -> Doc:
    """A document without the system properties Cosmos adds (`_etag`, `_rid`, `_ts`, ...)."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}
