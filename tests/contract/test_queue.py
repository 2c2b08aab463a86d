"""The queue contract (QueueSender and QueueConsumer), run against the fake, SQLite and Azure Storage (Azurite)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from azure.storage.queue import QueueClient

from shared.adapters.azurite import Azurite
from shared.adapters.storage_queue import StorageQueue
from shared.ports import QueueMessage
from tests.contract.storage_backends import (
    QUEUES,
    InspectableQueue,
    azurite_running,
    make_queue,
    storage_settings,
    unique_name,
    unreachable_queue,
)

T = TypeVar("T")
VISIBILITY = 1.0  # Azure Storage counts whole seconds; one is the shortest wait that means anything
BODIES = [
    json.dumps({"build": "b-1", "note": "héllo wörld ✓ 日本語 🚀", "nested": {"list": [1, 2.5, None]}},
               ensure_ascii=False),
    '<message attr="x">&amp; not XML</message>',
    "line one\nline two\ttabbed \"quoted\" \\ backslash",
    "=" * 3 + "not base64 already?",
]


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with azurite_running() as emulator:
        yield emulator


@pytest.fixture(params=QUEUES)
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> InspectableQueue:
    return make_queue(request.param, tmp_path, request)


def eventually(produce: Callable[[], T | None], within: float = 5.0) -> tuple[T, float]:
    """Poll until `produce` returns something; that and the seconds it took. Fails after `within`."""
    start = time.monotonic()
    while (found := produce()) is None:
        assert time.monotonic() - start < within, f"nothing within {within}s"
        time.sleep(0.1)
    return found, time.monotonic() - start


def test_send_receive_delete(queue: InspectableQueue) -> None:
    queue.check()
    queue.send("hello")
    message = queue.receive(visibility_timeout=30)
    assert message is not None and message.body == "hello" and message.dequeue_count == 1 and message.id
    assert queue.receive(visibility_timeout=30) is None  # hidden while held
    queue.delete(message)
    assert queue.depth() == 0
    assert queue.receive(visibility_timeout=30) is None


def test_a_message_not_deleted_reappears_after_its_visibility_timeout(queue: InspectableQueue) -> None:
    queue.send("retry me")
    first = queue.receive(visibility_timeout=VISIBILITY)
    assert first is not None and first.dequeue_count == 1
    assert queue.receive(visibility_timeout=VISIBILITY) is None
    again, waited = eventually(lambda: queue.receive(visibility_timeout=30))
    assert again.id == first.id and again.body == "retry me" and again.dequeue_count == 2
    assert waited > 0.5
    queue.delete(first)  # the first receipt is void now: deleting with it removes nothing
    assert queue.depth() == 1
    queue.delete(again)
    assert queue.depth() == 0


def test_a_delayed_message_stays_invisible_until_its_delay_ends(queue: InspectableQueue) -> None:
    queue.send("later", delay=VISIBILITY)
    assert queue.receive(visibility_timeout=30) is None
    assert queue.depth() == 1
    message, waited = eventually(lambda: queue.receive(visibility_timeout=30))
    assert message.body == "later" and message.dequeue_count == 1 and waited > 0.5


def test_hide_returns_the_receipt_to_use_from_then_on(queue: InspectableQueue) -> None:
    queue.send("heartbeat")
    message = queue.receive(visibility_timeout=VISIBILITY)
    assert message is not None
    renewed = queue.hide(message, 30)
    assert (renewed.id, renewed.body, renewed.dequeue_count) == (message.id, "heartbeat", 1)
    renewed = queue.hide(renewed, 30)  # a second heartbeat with the receipt the first returned
    time.sleep(VISIBILITY + 0.5)
    assert queue.receive(visibility_timeout=30) is None  # still hidden: the hide outlasted the receive's timeout
    queue.delete(renewed)
    assert queue.depth() == 0


def test_hide_for_no_time_hands_the_message_out_again(queue: InspectableQueue) -> None:
    queue.send("back off")
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    queue.hide(message, 0)
    again, _ = eventually(lambda: queue.receive(visibility_timeout=30))
    assert again.body == "back off" and again.dequeue_count == 2


def test_poison_moves_the_message_aside_with_its_reason(queue: InspectableQueue) -> None:
    body = json.dumps({"build": "b-2", "why": "ünïcode"}, ensure_ascii=False)
    queue.send(body)
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    queue.poison(message, "BuildFailed: step 3 — exit 1")
    assert queue.depth() == 0
    assert queue.poisoned() == [(body, "BuildFailed: step 3 — exit 1")]
    assert queue.receive(visibility_timeout=30) is None


def test_bodies_survive_the_round_trip_unchanged(queue: InspectableQueue) -> None:
    for body in BODIES:
        queue.send(body)
    received: list[QueueMessage] = []
    while (message := queue.receive(visibility_timeout=30)) is not None:
        received.append(message)
    assert sorted(m.body for m in received) == sorted(BODIES)  # Azure's order is only best-effort FIFO
    for message in received:
        queue.delete(message)
    assert queue.depth() == 0


@pytest.mark.parametrize("kind", QUEUES)
def test_check_fails_fast_when_the_backend_does_not_answer(kind: str, tmp_path: Path) -> None:
    queue = unreachable_queue(kind, tmp_path)
    start = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - each backend fails in its own way; any exception is the contract
        queue.check()
    assert time.monotonic() - start < 10


@pytest.mark.integration
def test_storage_queue_sends_base64_on_the_wire(azurite: Azurite) -> None:
    name = unique_name("wire")
    queue = StorageQueue.from_settings(storage_settings(azurite.connection_string, create=True), name)
    queue.send(BODIES[0])
    # A client without a decode policy sees what the Functions host's queue trigger receives.
    raw = QueueClient.from_connection_string(azurite.connection_string, name).peek_messages()
    assert [base64.b64decode(m.content).decode("utf8") for m in raw] == [BODIES[0]]


@pytest.mark.integration
def test_storage_queue_poison_envelope(azurite: Azurite) -> None:
    name = unique_name("env")
    queue = StorageQueue.from_settings(storage_settings(azurite.connection_string, create=True), name)
    queue.send("payload")
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    queue.poison(message, "gave up")
    raw = QueueClient.from_connection_string(azurite.connection_string, f"{name}-poison").peek_messages()
    envelopes = [json.loads(base64.b64decode(m.content)) for m in raw]
    assert envelopes == [{"body": "payload", "reason": "gave up", "dequeue_count": 1}]
    # The Functions host poisons by moving the bare original; poisoned() shows those too.
    queue.poison_client.send_message('{"build": "b-3"}')
    assert queue.poisoned() == [("payload", "gave up"),
                                ('{"build": "b-3"}', "moved here by the Functions host after too many dequeues")]


@pytest.mark.integration
def test_storage_queue_derives_its_poison_queue_from_a_bare_client(azurite: Azurite) -> None:
    created = StorageQueue.from_settings(storage_settings(azurite.connection_string, create=True), unique_name("own"))
    queue = StorageQueue(created.client)  # no poison client given: the sibling on the same account
    assert queue.poison_client.queue_name == created.poison_client.queue_name
    queue.send("x")
    message = queue.receive(visibility_timeout=30)
    assert message is not None
    queue.poison(message, "why")
    assert queue.poisoned() == [("x", "why")]
