"""Benchmark 4: store and queue operations per use case in Cosmos mode, counted by the adapters against the
emulators (a Cosmos DB server and Azurite), and a registration's latency against the SQLite path in the same run.

Operation counts are exact, not timed: they are what the Azure home pays per request (Cosmos bills request
units per operation, and a query costs more than a point read)."""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.timing import Row, best_of
from shared.adapters.azurite import EMULATORS, Azurite
from shared.adapters.cosmos_emulator import CosmosEmulator
from shared.bootstrap import Services, build_services
from shared.domain.images import ImageRef
from shared.settings import Settings

WORKSPACE = "bench"
DEFINITION: dict[str, Any] = {
    "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04",
    "conda_file": {"channels": ["conda-forge"], "dependencies": ["python=3.11", {"pip": ["numpy==1.26.4"]}]},
}
NAMES = 25  # environments registered before measuring, so lists and heads are not trivially small
PAGE = 10
REGISTRATIONS = 40  # per side per round of the latency comparison
REPEATS = 3
HIT_GOAL_READS = 2  # a cache hit may cost at most 2 point reads and no query


class CountingQueue:
    """The queue adapter with its sends counted (the port's one operation a use case calls)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sends = 0

    def check(self) -> None:
        self.inner.check()

    def send(self, body: str, *, delay: float = 0.0) -> None:
        self.sends += 1
        self.inner.send(body, delay=delay)


class DictRegistry:
    """A registry that answers from a dict: the store's cost is measured here, not the registry's."""

    def __init__(self) -> None:
        self.images: dict[str, str] = {}

    def check(self) -> None: ...

    def head(self, ref: ImageRef) -> str | None:
        return self.images.get(str(ref))

    def tags(self, registry: str, repository: str) -> list[str]:
        return []


@dataclass(frozen=True)
class Cost:
    """What one use case cost."""

    use_case: str
    ops: Counter[str]
    sends: int

    def verdict(self) -> str:
        """Only the cache hit has a goal."""
        if self.use_case != "ensure-image, cache hit":
            return "-"
        met = self.ops["read"] <= HIT_GOAL_READS and self.ops["query"] == 0
        return "meets" if met else "misses"


def missing() -> list[str]:
    """What this benchmark needs that is not installed."""
    return [] if EMULATORS.is_dir() and shutil.which("node") else ["the emulators (`make emulators`)"]


def _services(settings: Settings, registry: DictRegistry) -> tuple[Services, CountingQueue]:
    plain = build_services(settings, registry=registry)
    queue = CountingQueue(plain.ports["queue"].adapter)
    return build_services(settings, registry=registry, queue=queue), queue


def _cost(services: Services, queue: CountingQueue, use_case: str, call: Callable[[], object]) -> Cost:
    counters = [services.ports["store"].adapter.operations, services.ports["builds"].adapter.operations]
    before: Counter[str] = sum(counters, Counter())
    sends = queue.sends
    call()
    after: Counter[str] = sum(counters, Counter())
    return Cost(use_case, after - before, queue.sends - sends)


def costs(services: Services, queue: CountingQueue, registry: DictRegistry) -> list[Cost]:
    """Each use case once, on a store that already holds NAMES environments."""
    env, images = services.environments, services.images
    for index in range(NAMES):
        env.register(workspace=WORKSPACE, name=f"env-{index}", document={**DEFINITION, "description": str(index)})
    hit = images.target(env.get(workspace=WORKSPACE, name="env-0", version="1"))
    registry.images[str(hit)] = "sha256:" + "a" * 64
    missed = {**DEFINITION, "image": "python:3.11"}
    env.register(workspace=WORKSPACE, name="missed", document=missed)
    return [
        _cost(services, queue, "register, a new name", lambda: env.register(
            workspace=WORKSPACE, name="fresh", document=DEFINITION)),
        _cost(services, queue, "register, the next version", lambda: env.register(
            workspace=WORKSPACE, name="env-1", document={**DEFINITION, "description": "v2"})),
        _cost(services, queue, "get a version", lambda: env.get(workspace=WORKSPACE, name="env-2", version="1")),
        _cost(services, queue, "get latest", lambda: env.get(workspace=WORKSPACE, name="env-1", version="latest")),
        _cost(services, queue, f"list a page ({PAGE})", lambda: env.list_latest(
            workspace=WORKSPACE, top=PAGE, cursor=None)),
        _cost(services, queue, "ensure-image, cache hit", lambda: images.ensure(
            workspace=WORKSPACE, name="env-0", version="1")),
        _cost(services, queue, "ensure-image, miss (build queued)", lambda: images.ensure(
            workspace=WORKSPACE, name="missed", version="1")),
    ]


def registrations(services: Services) -> Callable[[], None]:
    """REGISTRATIONS new versions of one name, in process (the HTTP hop is benchmark 2's subject)."""
    name = f"latency-{uuid.uuid4().hex[:8]}"

    def go() -> None:
        for index in range(REGISTRATIONS):
            services.environments.register(workspace=WORKSPACE, name=name,
                                           document={**DEFINITION, "description": str(index)})
    return go


def run(root: Path) -> tuple[list[Cost], list[Row]]:
    """Emulators under `root`; the operation table, and the latency row."""
    with ExitStack() as stack:
        azurite = stack.enter_context(Azurite())
        cosmos = stack.enter_context(CosmosEmulator())
        quiet: dict[str, Any] = {"registry": "reg.bench:5000", "log_level": "WARNING"}
        cosmos_settings = Settings(
            data_dir=root / "cosmos", **quiet, store="cosmos", cosmos_endpoint=cosmos.endpoint, cosmos_key=cosmos.key,
            cosmos_create=True, cosmos_database=f"bench-{uuid.uuid4().hex[:8]}",
            queue="storage", storage_connection_string=azurite.connection_string, storage_create=True)
        registry = DictRegistry()
        services, queue = _services(cosmos_settings, registry)
        table = costs(services, queue, registry)
        sqlite, _ = _services(Settings(data_dir=root / "sqlite", **quiet), registry)
        cosmos_time, sqlite_time = best_of([registrations(services), registrations(sqlite)], REPEATS)
    registration = next(cost for cost in table if cost.use_case == "register, the next version")
    ops = ", ".join(f"{count} {kind}" for kind, count in sorted(registration.ops.items()))
    return table, [Row("registration in Cosmos mode (emulator) vs SQLite, in process",
                       f"{cosmos_time / REGISTRATIONS * 1e3:.1f} ms ({ops})",
                       f"{sqlite_time / REGISTRATIONS * 1e3:.1f} ms", cosmos_time / sqlite_time, None,
                       lower_is_better=True)]
