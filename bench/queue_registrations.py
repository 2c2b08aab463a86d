"""Benchmark: registrations through the registration queue, end to end to the reply, against the HTTP path."""

from __future__ import annotations

import itertools
import json
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.http_registrations import DEFINITION, WORKSPACE
from bench.server import server
from bench.timing import Row, best_of
from shared import factories
from shared.settings import Settings

MESSAGES = 200
REPEATS = 3
WARMUP = 10
REPLIES = "bench-replies"
TIMEOUT = 120.0


class Sides:
    """The same registrations (new names each time) as messages to `envhub serve`'s worker, or as POSTs."""

    def __init__(self, data_dir: Path, client: httpx.Client, base: str) -> None:
        settings = Settings(data_dir=data_dir)  # the server's own SQLite queues, from a second process
        self.requests = factories.named_queue(settings, settings.registration_queue)
        self.replies = factories.named_queue(settings, REPLIES)
        self.client = client
        self.base = base
        self._names = itertools.count()

    def by_queue(self, count: int = MESSAGES) -> None:
        """Send `count` registrations, then take replies until each has its own (registered) one."""
        ids = set()
        for _ in range(count):
            index = next(self._names)
            ids.add(f"q-{index}")
            self.requests.send(json.dumps({
                "schema": "envhub.registration/1", "workspace": WORKSPACE, "name": f"queued-{index}",
                "definition": DEFINITION, "correlation_id": f"q-{index}", "reply_to": REPLIES}))
        deadline = time.monotonic() + TIMEOUT
        while ids:
            message = self.replies.receive(30)
            if message is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(ids)} registrations had no reply after {TIMEOUT:.0f}s")
                time.sleep(0.002)
                continue
            reply = json.loads(message.body)
            self.replies.delete(message)
            if reply["status"] != "registered":
                raise RuntimeError(f"a queued registration failed: {reply}")
            ids.discard(reply["correlation_id"])

    def by_http(self, count: int = MESSAGES) -> None:
        """POST `count` registrations one after another on one keep-alive connection."""
        for _ in range(count):
            index = next(self._names)
            response = self.client.post(f"{self.base}/workspaces/{WORKSPACE}/environments/posted-{index}/versions",
                                        json=DEFINITION)
            if response.status_code != 201:
                raise RuntimeError(f"POST answered {response.status_code}: {response.text[:300]}")


def run(root: Path) -> list[Row]:
    """Serve from a fresh data folder (its worker drains the queues) and time both ways of registering."""
    data_dir = root / "data"
    with ExitStack() as stack:
        served = stack.enter_context(server(data_dir))
        client = stack.enter_context(served.client(timeout=30.0))
        sides = Sides(data_dir, client, served.base)
        sides.by_queue(WARMUP)
        sides.by_http(WARMUP)
        queued, posted = best_of([sides.by_queue, sides.by_http], REPEATS)
    return [Row("registrations through the queue, send to reply (1 worker) vs HTTP POSTs (1 client)",
                f"{MESSAGES / queued:,.0f} reg/s", f"{MESSAGES / posted:,.0f} reg/s", posted / queued, None)]
