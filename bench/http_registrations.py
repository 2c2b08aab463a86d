"""Benchmark 2: registrations per second over HTTP, against the trivial liveness route of the same server."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.server import server
from bench.timing import Row, best_of

REQUESTS = 300
THREADS = 4
REPEATS = 5
WARMUP = 20
GOAL = 0.3
WORKSPACE = "bench"
DEFINITION: dict[str, Any] = {
    "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04",
    "conda_file": {"channels": ["conda-forge"], "dependencies": ["python=3.11", {"pip": ["numpy==1.26.4"]}]},
}


class Load:
    """The two request kinds, each checked for its expected status; names never repeat, so each POST creates."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._names = itertools.count()
        self._lock = threading.Lock()  # itertools.count is not documented as thread-safe

    def health(self, client: httpx.Client) -> None:
        """GET /api/health/live: FastAPI's routing and serialisation with no work behind them."""
        _expect(client.get(f"{self.base}/health/live"), 200)

    def register(self, client: httpx.Client) -> None:
        """POST a new system-managed environment (201)."""
        with self._lock:
            index = next(self._names)
        url = f"{self.base}/workspaces/{WORKSPACE}/environments/env-{index}/versions"
        _expect(client.post(url, json=DEFINITION), 201)


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}, expected {status}: {response.text[:500]}")


def sequential(client: httpx.Client, call: Callable[[httpx.Client], None]) -> Callable[[], None]:
    """REQUESTS calls one after another on one keep-alive connection."""
    def go() -> None:
        for _ in range(REQUESTS):
            call(client)
    return go


def concurrent(clients: list[httpx.Client], call: Callable[[httpx.Client], None]) -> Callable[[], None]:
    """REQUESTS calls shared among one thread per client, each on its own keep-alive connection."""
    def go() -> None:
        errors: list[BaseException] = []

        def worker(client: httpx.Client, count: int) -> None:
            try:
                for _ in range(count):
                    call(client)
            except BaseException as error:  # re-raised in the caller: a thread's failure must not pass silently
                errors.append(error)

        share = [REQUESTS // len(clients) + (i < REQUESTS % len(clients)) for i in range(len(clients))]
        threads = [threading.Thread(target=worker, args=(c, n)) for c, n in zip(clients, share, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    return go


def run(root: Path) -> list[Row]:
    """Serve from a fresh data folder under `root` and time both routes, sequentially and with THREADS clients."""
    data_dir = root / "data"
    with ExitStack() as stack:
        served = stack.enter_context(server(data_dir))
        load = Load(served.base)
        clients = [stack.enter_context(served.client(timeout=30.0)) for _ in range(THREADS)]
        for _ in range(WARMUP):  # first requests pay for lazy imports and the SQLite connection: keep them out
            load.health(clients[0])
            load.register(clients[0])
        reg, health = best_of([sequential(clients[0], load.register), sequential(clients[0], load.health)], REPEATS)
        reg_n, health_n = best_of([concurrent(clients, load.register), concurrent(clients, load.health)], REPEATS)
    rows = []
    for label, goal, reg_time, health_time in (
        ("registrations over HTTP, 1 client", GOAL, reg, health),
        (f"registrations over HTTP, {THREADS} client threads", None, reg_n, health_n),
    ):
        rows.append(Row(label, f"{REQUESTS / reg_time:,.0f} reg/s", f"{REQUESTS / health_time:,.0f} health/s",
                        health_time / reg_time, goal))
    return rows
