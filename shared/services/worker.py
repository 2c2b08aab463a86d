"""Draining a queue: handle each message, keep it hidden while working, back off on faults, poison at last."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.errors import MessageRefused
from shared.ports import QueueConsumer, QueueMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerPolicy:
    """How long a message stays hidden, how often it may be tried, how long to wait between tries."""

    visibility_timeout: float = 60.0
    max_attempts: int = 5
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    idle_wait: float = 0.2  # polling an idle SQLite queue is cheap; a new build should start promptly

    def backoff(self, attempt: int) -> float:
        """Exponential backoff before try `attempt + 1`."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1)))


class QueueWorker:
    """Receives messages and hands them to `handle`. A handler that returns has done its work (or
    recorded a final failure); one that raises MessageRefused is poisoned at once; one that raises anything else is
    retried with backoff, then poisoned via `give_up`."""

    def __init__(self, queue: QueueConsumer, handle: Callable[[QueueMessage], None],
                 give_up: Callable[[QueueMessage, str], None], policy: WorkerPolicy) -> None:
        self.queue = queue
        self.handle = handle
        self.give_up = give_up
        self.policy = policy

    def run_once(self) -> bool:
        """Handle one message if one is visible; True when one was handled."""
        message = self.queue.receive(self.policy.visibility_timeout)
        if message is None:
            return False
        held = [message]  # the heartbeat swaps in each new receipt (Azure Storage issues one per update)
        stop_heartbeat = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(held, stop_heartbeat), daemon=True)
        heartbeat.start()
        try:
            self.handle(message)
        except MessageRefused as refused:  # final: retrying cannot help
            stop_heartbeat.set()
            heartbeat.join()
            log.warning("message %s refused: %s", message.id, refused)
            self.queue.poison(held[0], f"refused: {refused}")
            return True
        except Exception as error:  # any fault is retried; the handler records final failures itself
            stop_heartbeat.set()
            heartbeat.join()
            self._failed(held[0], error)
            return True
        stop_heartbeat.set()
        heartbeat.join()
        self.queue.delete(held[0])
        return True

    def _failed(self, message: QueueMessage, error: Exception) -> None:
        reason = f"{error.__class__.__name__}: {error}"
        if message.dequeue_count >= self.policy.max_attempts:
            log.error("giving up on message %s after %d attempts: %s", message.id, message.dequeue_count, reason)
            self.give_up(message, reason)
            self.queue.poison(message, reason)
            return
        delay = self.policy.backoff(message.dequeue_count)
        log.warning("attempt %d of message %s failed (%s); retrying in %.0fs", message.dequeue_count, message.id,
                    reason, delay)
        self.queue.hide(message, delay)

    def _heartbeat(self, held: list[QueueMessage], stop: threading.Event) -> None:
        # Renew well before the timeout so a long step is never handed to a second worker while alive.
        while not stop.wait(self.policy.visibility_timeout / 3):
            held[0] = self.queue.hide(held[0], self.policy.visibility_timeout)

    def run_forever(self, stop: threading.Event) -> None:
        """Drain until `stop` is set; errors in the loop itself are logged, never fatal."""
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("queue worker loop failed; continuing")
                busy = False
            if not busy:
                stop.wait(self.policy.idle_wait)
