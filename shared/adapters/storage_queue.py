"""The build queue on Azure Storage queues: the queue the Functions queue trigger consumes in Azure."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.storage.queue import (
    LinearRetry,
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.adapters.azure_errors import outage_as
from shared.domain.errors import QueueUnavailable
from shared.ports import QueueMessage
from shared.settings import Settings

POISON_SUFFIX = "-poison"  # the Functions host's own convention for a queue's dead letters
_PEEK_MAX = 32  # the service's limit for one peek

def client_options() -> dict[str, Any]:
    """Retries and timeouts for every client of this adapter: short, so an unreachable account fails a
    health check or a send in seconds rather than the SDK's default minute (the callers retry on their own)."""
    return {"retry_policy": LinearRetry(backoff=1, retry_total=2, random_jitter_range=1),
            "connection_timeout": 2, "read_timeout": 10}


def _message_options() -> dict[str, Any]:
    # The Functions host base64-decodes queue-trigger messages by default, so bodies travel base64-encoded:
    # a plain text body would fail to decode there. Receiving decodes the same way.
    return {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}


def _seconds(value: float, minimum: int = 0) -> int:
    # The service counts whole seconds; rounding up keeps a message hidden at least as long as asked.
    return max(minimum, math.ceil(value))


class StorageQueue:
    """One queue and its `<name>-poison` sibling: a QueueSender and a QueueConsumer.

    `client` and `poison` should carry base64 encode/decode policies (`from_settings` sets them); the
    poison client defaults to a sibling of `client`: the same account, signed in the same way."""

    def __init__(self, client: QueueClient, poison: QueueClient | None = None) -> None:
        self.client = client
        self.poison_client = poison or _sibling(client, client.queue_name + POISON_SUFFIX)

    @classmethod
    def from_settings(cls, settings: Settings, name: str) -> StorageQueue:
        """The queue `name` of the configured account: an emulator's connection string, or the account
        URL signed in with the managed identity. Creates both queues when `storage_create` is set."""
        if settings.storage_connection_string:
            service = QueueServiceClient.from_connection_string(settings.storage_connection_string, **client_options())
        elif settings.queue_account_url:
            service = QueueServiceClient(settings.queue_account_url, credential=DefaultAzureCredential(),
                                         **client_options())
        else:
            raise ValueError("the storage queue needs ENVHUB_QUEUE_ACCOUNT_URL or ENVHUB_STORAGE_CONNECTION_STRING")
        queue = cls(service.get_queue_client(name, **_message_options()),
                    service.get_queue_client(name + POISON_SUFFIX, **_message_options()))
        if settings.storage_create:
            queue.create()
        return queue

    def create(self) -> None:
        """Create the queue and its poison queue unless they exist (emulators; infra/ does it in Azure)."""
        for client in (self.client, self.poison_client):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()

    def check(self) -> None:
        with outage_as(QueueUnavailable, "Azure Storage", self.client.queue_name):
            self.client.get_queue_properties()

    def send(self, body: str, *, delay: float = 0.0) -> None:
        with outage_as(QueueUnavailable, "Azure Storage", self.client.queue_name):
            self.client.send_message(body, visibility_timeout=_seconds(delay) or None)

    def receive(self, visibility_timeout: float) -> QueueMessage | None:
        received = self.client.receive_message(visibility_timeout=_seconds(visibility_timeout, minimum=1))
        if received is None:
            return None
        return QueueMessage(id=received.id, receipt=str(received.pop_receipt), body=str(received.content),
                            dequeue_count=int(received.dequeue_count or 0))

    def delete(self, message: QueueMessage) -> None:
        try:
            self.client.delete_message(message.id, pop_receipt=message.receipt)
        except HttpResponseError as error:
            # Already gone (a retried delete whose first try succeeded), or handed to another receiver
            # since: either way it is no longer this receiver's to finish, as with the SQLite queue.
            if not _lost(error):
                raise

    def hide(self, message: QueueMessage, seconds: float) -> QueueMessage:
        updated = self.client.update_message(message.id, pop_receipt=message.receipt,
                                             visibility_timeout=_seconds(seconds))
        # The old receipt is void from now on; the body is unchanged (update_message sends none).
        return QueueMessage(id=message.id, receipt=str(updated.pop_receipt), body=message.body,
                            dequeue_count=message.dequeue_count)

    def poison(self, message: QueueMessage, reason: str) -> None:
        envelope = {"body": message.body, "reason": reason, "dequeue_count": message.dequeue_count}
        # Sent before the delete: a crash in between leaves the message twice, never nowhere.
        self.poison_client.send_message(json.dumps(envelope, ensure_ascii=False))
        self.delete(message)

    def depth(self) -> int:
        """Messages waiting or in flight (the service's approximate count)."""
        return int(self.client.get_queue_properties().approximate_message_count or 0)

    def poisoned(self) -> list[tuple[str, str]]:
        """(body, reason) of the poisoned messages, oldest first; peeked, so at most the service's 32."""
        return [_unwrap(str(m.content)) for m in self.poison_client.peek_messages(max_messages=_PEEK_MAX)]


def _unwrap(content: str) -> tuple[str, str]:
    try:
        envelope = json.loads(content)
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and {"body", "reason"} <= envelope.keys():
        return str(envelope["body"]), str(envelope["reason"])
    # In Azure the Functions host poisons too, after maxDequeueCount tries: it moves the bare original.
    return content, "moved here by the Functions host after too many dequeues"


def _lost(error: HttpResponseError) -> bool:
    return isinstance(error, ResourceNotFoundError) or getattr(error, "error_code", None) == "PopReceiptMismatch"


def _sibling(client: QueueClient, name: str) -> QueueClient:
    """Another queue of the same account, signed in the same way (a SAS in the URL is kept), with our policies."""
    parts = urlsplit(client.url)
    url = urlunsplit(parts._replace(path=f"{parts.path.rsplit('/', 1)[0]}/{quote(name)}"))
    return QueueClient.from_queue_url(url, credential=client.credential, **client_options(), **_message_options())
