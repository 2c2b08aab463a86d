"""Benchmark 6: a load run against `envhub serve` on loopback (SQLite home), 20 keep-alive clients.

1,000 registrations (50 names x 20, shuffled so that one name is often registered by several clients at once),
checked through the history listing: every answer 201, every name's versions exactly 1..n. Then 1,000 cache-hit
ensures of user-image environments whose image is in the server's own registry. Each phase's throughput and
p50/p99 against the liveness route under the same load, measured just before it on the same server. Last, with
the workspace registry stalled (a listener that never answers) and ensures kept in flight, the p99 of a version
GET and of /api/health against a 50 ms goal, next to the same figures under the same load with a healthy one."""

from __future__ import annotations

import json
import random
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.load_drive import Sample, Stalled, drive, hammer, probe, push_image
from bench.load_stats import Summary, integrity, overlaps
from bench.server import Served, server
from bench.timing import Row

CLIENTS = 20
NAMES, VERSIONS = 50, 20  # 1,000 registrations
ENSURES = 1_000
HIT_NAMES = 50  # user-image environments the ensures go round
BASELINE = 1_000  # liveness requests measured before each phase
IN_FLIGHT = 50  # ensures kept in flight while the tail latencies are probed
PROBE_SECONDS = 15.0  # the circuit opens ~3 s in and is probed again (half-open) 10 s later: one whole cycle
IDLE_SECONDS = 5.0  # the same probes with no ensures at all
PAUSE = 0.01  # seconds between a prober's requests
# Seconds an ensure loop waits after each answer. With none, 50 loops of instant 503s saturate a small machine
# and every route's tail is queueing for the CPU, stalled registry or not; half a second keeps up to 50 ensures
# waiting on the registry while its circuit is closed, and ~100 ensures/s offered once it is open.
THINK = 0.5
GOAL = 0.050  # p99 of a version GET and of health while the registry stalls
WORKSPACE = "load"
SEED = 1234  # the shuffle of registrations, the same every run
DEFINITION: dict[str, Any] = {
    "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04",
    "conda_file": {"channels": ["conda-forge"], "dependencies": ["python=3.11", {"pip": ["numpy==1.26.4"]}]},
}
SHAPE = (f"load: {NAMES * VERSIONS:,} registrations ({NAMES} names x {VERSIONS}) and {ENSURES:,} cache-hit ensures "
         f"from {CLIENTS} keep-alive clients, each against {BASELINE:,} liveness GETs just before; a version GET "
         f"and /api/health probed in turn for {PROBE_SECONDS:.0f} s beside {IN_FLIGHT} ensure loops ({THINK:g} s "
         f"think time), with the workspace registry stalled and healthy, and for {IDLE_SECONDS:.0f} s idle")


def missing() -> list[str]:
    """The tools this benchmark needs that are not installed (the server runs its own registry)."""
    return [tool for tool in ("docker-registry",) if shutil.which(tool) is None]


@dataclass(frozen=True)
class UnderLoad:
    """Tail latencies of a version GET and of /api/health while ensures are kept in flight, and those ensures."""

    get: Summary
    health: Summary
    get_errors: int  # version GETs not answered 200
    ensures: dict[str, Any]  # statuses (a Counter) and slowest (seconds)


def run(root: Path, note: Callable[[str], None] = print) -> list[Row]:
    """Both servers under `root`; the load phases, then the stalled registry. Problems found are passed to
    `note` (the rows carry the counts)."""
    with ExitStack() as stack:
        served = stack.enter_context(server(root / "healthy" / "data"))
        clients = [stack.enter_context(served.client(timeout=60.0)) for _ in range(CLIENTS)]
        api = Api(served, stack.enter_context(served.client(timeout=60.0)))
        api.warm_up(clients)
        live = phase(clients, BASELINE, api.live)
        reg_samples, reg_seconds = drive(clients, NAMES * VERSIONS, api.register)
        good, problems = integrity(api.sent, api.answers(reg_samples), api.read_back())
        overlapping = overlaps((api.sent[f"r{s.index:04d}"], s.started, s.ended) for s in reg_samples)
        api.prepare_hits()
        live_2 = phase(clients, BASELINE, api.live)
        ens_samples, ens_seconds = drive(clients, ENSURES, api.ensure)
        cached = sum(1 for s in ens_samples if s.status == 200 and json.loads(s.body).get("cached") is True)
        hit = api.version_url("hit-00", "1")
        idle = under_load(served, hit, hit + "/image", in_flight=0, seconds=IDLE_SECONDS)
        calm = under_load(served, hit, hit + "/image")
    stalled = stalled_figures(root / "stalled")
    for problem in problems[:10]:
        note(f"registration problem: {problem}")
    for sample in [s for s in ens_samples if s.status != 200][:10]:
        note(f"ensure {sample.index} answered {sample.status}: {sample.body[:200]!r}")
    reg, ens = Summary.of(_seconds(reg_samples), reg_seconds), Summary.of(_seconds(ens_samples), ens_seconds)
    sent = NAMES * VERSIONS
    return [
        Row(f"load: {sent:,} registrations, {CLIENTS} clients (ratio: throughput vs liveness)",
            f"{reg.text('reg')} (p99 x{reg.p99 / live.p99:.1f} liveness)", live.text("live"), reg.rate / live.rate,
            None),
        Row("load: registrations all 201, each name's versions exactly 1..n (history read back)",
            f"{good:,} good, {len(problems)} problems; {overlapping:,} same-name overlaps", f"{sent:,} sent",
            good / sent, 1.0),
        Row(f"load: {ENSURES:,} cache-hit ensures, {CLIENTS} clients (ratio: throughput vs liveness)",
            f"{ens.text('ensure')} (p99 x{ens.p99 / live_2.p99:.1f} liveness)", live_2.text("live"),
            ens.rate / live_2.rate, None),
        Row("load: ensures all 200 cached=true", f"{cached:,} cached", f"{ENSURES:,} sent", cached / ENSURES, 1.0),
        *(Row(f"stalled workspace registry, {IN_FLIGHT} ensure loops: {label} p99 (ratio: vs the 50 ms goal)",
              bad.tail() + (f", {errors} not 200" if errors else ""),
              f"goal {GOAL * 1e3:.0f} ms; healthy registry, same load: p99 {same.p99 * 1e3:.1f} ms; idle: p99 "
              f"{quiet.p99 * 1e3:.1f} ms", bad.p99 / GOAL, 1.0, lower_is_better=True)
          for label, bad, same, quiet, errors in (
              ("GET version", stalled.get, calm.get, idle.get, stalled.get_errors),
              ("GET /api/health", stalled.health, calm.health, idle.health, 0))),
        Row(f"stalled workspace registry: the {IN_FLIGHT} ensure loops' answers (ratio: vs healthy)",
            _answers(stalled.ensures), "healthy: " + _answers(calm.ensures),
            sum(stalled.ensures["statuses"].values()) / max(1, sum(calm.ensures["statuses"].values())), None),
    ]


class Api:
    """The calls of the load phases; `sent` maps each registration's request id (a tag on it) to its name."""

    def __init__(self, served: Served, client: httpx.Client) -> None:
        self.served = served
        self.client = client
        self.ws = f"{served.base}/workspaces/{WORKSPACE}/environments"
        order = [f"load-{i % NAMES:02d}" for i in range(NAMES * VERSIONS)]
        random.Random(SEED).shuffle(order)
        self.sent = {f"r{i:04d}": name for i, name in enumerate(order)}

    def version_url(self, name: str, version: str) -> str:
        """GET one version; + "/image" to ensure its image."""
        return f"{self.ws}/{name}/versions/{version}"

    def live(self, client: httpx.Client, _: int) -> httpx.Response:
        """The baseline: FastAPI's routing and serialisation with nothing behind them."""
        return client.get(f"{self.served.base}/health/live")

    def register(self, client: httpx.Client, index: int) -> httpx.Response:
        """Registration `index` of the shuffled order, tagged with its request id."""
        request = f"r{index:04d}"
        return client.post(f"{self.ws}/{self.sent[request]}/versions",
                           json={**DEFINITION, "tags": {"request": request}})

    def ensure(self, client: httpx.Client, index: int) -> httpx.Response:
        """Ensure the image of one of the user-image environments, in turn."""
        return client.post(self.version_url(f"hit-{index % HIT_NAMES:02d}", "1") + "/image")

    def warm_up(self, clients: list[httpx.Client]) -> None:
        """Open every client's connection, and pay for lazy imports and the store's first use, out of the timing."""
        for client in clients:
            _expect(self.live(client, 0), 200)
        for _ in range(5):
            _expect(self.client.post(f"{self.ws}/warm-up/versions", json=DEFINITION), 201)
        _expect(self.client.get(self.version_url("warm-up", "1")), 200)

    def answers(self, samples: list[Sample]) -> dict[str, tuple[int, str | None]]:
        """Each registration's status and the version it was given."""
        return {f"r{s.index:04d}": (s.status, json.loads(s.body)["version"] if s.status == 201 else None)
                for s in samples}

    def read_back(self) -> dict[str, list[tuple[str, str | None]]]:
        """Every load name's versions and the request id each carries, from the history listing."""
        seen: dict[str, list[tuple[str, str | None]]] = {}
        for name in sorted(set(self.sent.values())):
            page = _expect(self.client.get(f"{self.ws}/{name}/versions", params={"$top": 1000}), 200)
            if page.get("nextLink"):
                raise RuntimeError(f"{name} has more than 1,000 versions: not a load run's")
            seen[name] = [(r["version"], r["definition"].get("tags", {}).get("request")) for r in page["value"]]
        return seen

    def prepare_hits(self) -> None:
        """Push a small image into the server's registry and register HIT_NAMES user-image environments of it."""
        with httpx.Client(timeout=30.0) as plain:  # not self.client: envhub's token is not the registry's business
            image = push_image(plain, self.served.registry_host, "bench/load", "latest")
        for i in range(HIT_NAMES):
            _expect(self.client.post(f"{self.ws}/hit-{i:02d}/versions", json={"image": image}), 201)
        answer = _expect(self.client.post(self.version_url("hit-00", "1") + "/image"), 200)
        if answer.get("cached") is not True:
            raise RuntimeError(f"the pushed image is not a cache hit: {answer}")


def phase(clients: list[httpx.Client], count: int, call: Callable[[httpx.Client, int], httpx.Response]) -> Summary:
    """`count` calls from every client at once, each expected 200."""
    samples, seconds = drive(clients, count, call)
    failed = [s for s in samples if s.status != 200]
    if failed:
        raise RuntimeError(f"{len(failed)} baseline requests failed, e.g. {failed[0].status}: {failed[0].body[:200]!r}")
    return Summary.of(_seconds(samples), seconds)


def under_load(served: Served, get_url: str, ensure_url: str, in_flight: int = IN_FLIGHT,
               seconds: float = PROBE_SECONDS) -> UnderLoad:
    """Probe a version GET and /api/health in turn for `seconds` while `in_flight` ensure loops run."""
    stop = threading.Event()
    with ExitStack() as stack:
        client = stack.enter_context(served.client(timeout=60.0))
        _expect(client.get(get_url), 200)  # the connection open before the timing
        ensures: dict[str, Any] = {"statuses": Counter(), "slowest": 0.0}
        if in_flight:
            ensures = stack.enter_context(hammer(ensure_url, served.headers, in_flight, THINK))
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        probing = pool.submit(probe, client, [get_url, f"{served.base}/health"], stop, PAUSE)
        stop.wait(seconds)
        stop.set()
        get_samples, health_samples = probing.result()
    return UnderLoad(Summary.of(_seconds(get_samples), seconds), Summary.of(_seconds(health_samples), seconds),
                     sum(1 for s in get_samples if s.status != 200), ensures)


def stalled_figures(folder: Path) -> UnderLoad:
    """A server whose workspace registry never answers: the ensures' HEADs wait on it."""
    with Stalled() as stalled, ExitStack() as stack:
        served = stack.enter_context(server(folder / "data", {
            "ENVHUB_REGISTRY": stalled.host, "ENVHUB_INSECURE_REGISTRIES": stalled.host}))
        client = stack.enter_context(served.client(timeout=60.0))
        ws = f"{served.base}/workspaces/{WORKSPACE}/environments"
        _expect(client.post(f"{ws}/stuck/versions", json=DEFINITION), 201)
        return under_load(served, f"{ws}/stuck/versions/1", f"{ws}/stuck/versions/1/image")


def _seconds(samples: list[Sample]) -> list[float]:
    return [s.seconds for s in samples]


def _answers(ensures: dict[str, Any]) -> str:
    statuses = ensures["statuses"]
    counts = ", ".join(f"{status or 'none'} x {n:,}" for status, n in sorted(statuses.items()))
    return f"{sum(statuses.values()):,} ({counts}); slowest {ensures['slowest']:.2f} s"


def _expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}, expected {status}: {response.text[:500]}")
    return response.json() if response.content else None
