"""Replies to queue messages: onto a queue of the sender's, or posted to an allowed https webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.adapters.guarded_network import guarded_client
from shared.domain.errors import Unavailable
from shared.domain.outbound import host_problem, ip_literal, split_host
from shared.ports import QueueSender


class QueueReplies:
    """A reply to a queue goes as a JSON message through the queue backend envhub uses (one sender per queue, made
    on first use, which creates the queue where the backend needs that). A reply to a webhook is POSTed through the
    guarded network (names resolved once, private addresses refused unless written as IP literals), with retries."""

    def __init__(self, queue_for: Callable[[str], QueueSender], *, webhooks: Collection[str] = (),
                 attempts: int = 3, backoff: float = 0.5, timeout: float = 10.0) -> None:
        self._queue_for = queue_for
        self._queues: dict[str, QueueSender] = {}
        self._lock = threading.Lock()
        literal = [e for e in webhooks if not host_problem(e) and ip_literal(split_host(e)[0]) is not None]
        self._client = guarded_client(literal, timeout=httpx.Timeout(timeout))
        self._retrying = Retrying(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=backoff, max=10),
                                  retry=retry_if_exception_type(_Again), reraise=True)

    def check(self) -> None:
        """Reply queues and webhooks are the senders'; there is nothing of envhub's to reach ahead of a reply."""

    def send(self, reply_to: str, body: dict[str, Any]) -> None:
        if reply_to.startswith("https://"):
            self._post(reply_to, body)
            return
        with self._lock:
            queue = self._queues.get(reply_to)
            if queue is None:
                queue = self._queues[reply_to] = self._queue_for(reply_to)
        queue.send(json.dumps(body, ensure_ascii=False, separators=(",", ":")))

    def _post(self, url: str, body: dict[str, Any]) -> None:
        try:
            for attempt in self._retrying.copy():
                with attempt:
                    self._post_once(url, body)
        except _Again as error:
            raise Unavailable(f"the reply webhook did not take the reply: {error}", where="reply_to") from error

    def _post_once(self, url: str, body: dict[str, Any]) -> None:
        try:
            response = self._client.post(url, json=body, follow_redirects=False)
        except httpx.HTTPError as error:  # refused addresses too: the reason goes to the log, not the sender
            raise _Again(f"{type(error).__name__}: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise _Again(f"answered {response.status_code}")
        if not response.is_success:
            raise Unavailable(f"the reply webhook answered {response.status_code}", where="reply_to")


class _Again(Exception):
    """A delivery worth trying again."""
