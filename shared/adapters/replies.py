"""Replies to queue messages: onto a queue of the sender's, through the queue backend envhub uses."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from shared.ports import QueueSender


class QueueReplies:
    """Sends each reply as a JSON message to the queue `reply_to` names, one sender per queue, made on first use
    (which creates the queue where the backend needs that)."""

    def __init__(self, queue_for: Callable[[str], QueueSender]) -> None:
        self._queue_for = queue_for
        self._queues: dict[str, QueueSender] = {}
        self._lock = threading.Lock()

    def check(self) -> None:
        """Reply queues are the senders'; there is nothing of envhub's to reach ahead of a reply."""

    def send(self, reply_to: str, body: dict[str, Any]) -> None:
        with self._lock:
            queue = self._queues.get(reply_to)
            if queue is None:
                queue = self._queues[reply_to] = self._queue_for(reply_to)
        queue.send(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
