"""The durable SQLite queue and the worker loop: visibility, redelivery, backoff, heartbeat, poison."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_queue import SqliteQueue
from shared.ports import QueueMessage
from shared.services.worker import QueueWorker, WorkerPolicy


@pytest.fixture
def queue(tmp_path: Path) -> SqliteQueue:
    return SqliteQueue(Database(tmp_path / "q.db"), "jobs")


def test_a_received_message_is_hidden_then_redelivered(queue: SqliteQueue) -> None:
    queue.send("one")
    first = queue.receive(visibility_timeout=0.3)
    assert first is not None and first.body == "one" and first.dequeue_count == 1
    assert queue.receive(visibility_timeout=0.3) is None
    time.sleep(0.35)
    again = queue.receive(visibility_timeout=5)
    assert again is not None and again.dequeue_count == 2
    queue.delete(first)  # a stale receipt deletes nothing
    assert queue.depth() == 1
    queue.delete(again)
    assert queue.depth() == 0


def test_messages_survive_a_new_connection(tmp_path: Path) -> None:
    SqliteQueue(Database(tmp_path / "q.db"), "jobs").send("durable")
    reopened = SqliteQueue(Database(tmp_path / "q.db"), "jobs")
    message = reopened.receive(visibility_timeout=5)
    assert message is not None and message.body == "durable"
    assert SqliteQueue(Database(tmp_path / "q.db"), "other").receive(visibility_timeout=5) is None


def test_worker_retries_with_backoff_then_poisons(queue: SqliteQueue) -> None:
    queue.send("bad")
    given_up: list[str] = []

    def handle(message: QueueMessage) -> None:
        raise ConnectionError("registry refused")

    worker = QueueWorker(queue, handle, lambda m, reason: given_up.append(reason),
                         WorkerPolicy(visibility_timeout=5, max_attempts=3, backoff_base=0.05))
    attempts = 0
    deadline = time.monotonic() + 10
    while queue.depth() and time.monotonic() < deadline:
        attempts += worker.run_once()
        time.sleep(0.02)
    assert attempts == 3 and queue.depth() == 0
    assert given_up == ["ConnectionError: registry refused"]
    assert queue.poisoned() == [("bad", "ConnectionError: registry refused")]


def test_worker_deletes_handled_messages(queue: SqliteQueue) -> None:
    seen: list[str] = []
    for body in ("a", "b"):
        queue.send(body)
    worker = QueueWorker(queue, lambda m: seen.append(m.body), lambda m, r: None, WorkerPolicy(visibility_timeout=5))
    while worker.run_once():
        pass
    assert seen == ["a", "b"] and queue.depth() == 0


def test_heartbeat_keeps_a_long_job_from_a_second_worker(queue: SqliteQueue) -> None:
    queue.send("long")
    started = threading.Event()
    release = threading.Event()

    def slow(message: QueueMessage) -> None:
        started.set()
        release.wait(5)

    policy = WorkerPolicy(visibility_timeout=0.3)
    worker = QueueWorker(queue, slow, lambda m, r: None, policy)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    started.wait(5)
    time.sleep(1.0)  # three visibility timeouts: without the heartbeat it would be visible again
    assert queue.receive(visibility_timeout=5) is None
    release.set()
    thread.join()
    assert queue.depth() == 0
