"""The scan report's webhook, against a real loopback HTTP server: JSON or a Teams card, retried, then refused."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.adapters.webhook import WebhookNotifier
from shared.domain.errors import Unavailable

REPORT: dict[str, Any] = {
    "scan_id": "s1",
    "findings": [{"workspace": "w", "environment": "e:1", "type": "patch_available", "base_image": "r/x:1.0.0",
                  "current": "1.0.0", "available": "1.0.1", "overdue": True}],
    "redeploy": [{"workspace": "w", "deployment": "d", "environment": "e:1", "reason": "base_moved on r/x:latest"}],
}


@contextmanager
def receiver(failures: int, status: int = 500) -> Iterator[tuple[str, list[Any]]]:
    """A webhook that answers `status` to the first `failures` POSTs, then 200; yields (url, bodies received)."""
    received: list[Any] = []
    answered = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            answered[0] += 1
            self.send_response(status if answered[0] <= failures else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_the_report_is_delivered_as_json_after_retries() -> None:
    with receiver(failures=2) as (url, received):
        notifier = WebhookNotifier(url, backoff=0.01)
        notifier.check()  # a 405 to HEAD is an answer: the host is there
        notifier.notify(REPORT)
    assert received == [REPORT] * 3


def test_a_delivery_that_keeps_failing_is_refused_with_the_reason() -> None:
    with receiver(failures=99) as (url, received), pytest.raises(Unavailable, match="answered 500"):
        WebhookNotifier(url, backoff=0.01, attempts=3).notify(REPORT)
    assert len(received) == 3


def test_a_client_error_is_not_retried() -> None:
    with receiver(failures=99, status=400) as (url, received), pytest.raises(Unavailable, match="answered 400"):
        WebhookNotifier(url, backoff=0.01).notify(REPORT)
    assert len(received) == 1


def test_a_teams_card() -> None:
    with receiver(failures=0) as (url, received):
        WebhookNotifier(url, format="teams").notify(REPORT)
    (card,) = received
    assert card["@type"] == "MessageCard" and "1 new findings, 1 deployments" in card["summary"]
    facts = card["sections"][0]["facts"]
    assert {"name": "w/e:1", "value": "patch_available: r/x:1.0.0 1.0.0 → 1.0.1 (overdue)"} in facts
    assert {"name": "redeploy w/d", "value": "base_moved on r/x:latest"} in facts


def test_an_unreachable_webhook_fails_its_check() -> None:
    with receiver(failures=0) as (url, _):
        pass  # stopped: nothing listens there any more
    with pytest.raises(Unavailable, match="did not answer"):
        WebhookNotifier(url).check()
