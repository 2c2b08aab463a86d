"""Load machinery: N keep-alive clients sharing a list of requests, background ensures in a process of their own,
a latency prober, a registry stand-in that accepts connections and never answers, and a small image to push."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import multiprocessing
import socket
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from typing import Any

import httpx

Call = Callable[[httpx.Client, int], httpx.Response]


@dataclass(frozen=True)
class Sample:
    """One request: its index in the phase, status (0: no answer), when it was sent and answered, its body."""

    index: int
    status: int
    started: float
    ended: float
    body: bytes

    @property
    def seconds(self) -> float:
        """Its latency as the client saw it."""
        return self.ended - self.started


def drive(clients: list[httpx.Client], count: int, call: Call) -> tuple[list[Sample], float]:
    """Send `count` requests, `call(client, index)`, from one thread per client, each taking the next index as
    soon as it is free (a closed loop: as many in flight as clients). Returns the samples and the wall time
    from the start signal to the last answer. Bodies are kept raw: parsing them is not the server's time."""
    samples: list[Sample] = []
    lock = threading.Lock()
    start = threading.Barrier(len(clients) + 1)
    next_index = iter(range(count))

    def worker(client: httpx.Client) -> None:
        start.wait()
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            began = time.perf_counter()
            try:
                response = call(client, index)
                status, body = response.status_code, response.content
            except httpx.HTTPError as error:  # counted as an error of the phase, not raised: the run goes on
                status, body = 0, f"{type(error).__name__}: {error}".encode()
            sample = Sample(index, status, began, time.perf_counter(), body)
            with lock:
                samples.append(sample)

    threads = [threading.Thread(target=worker, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return sorted(samples, key=lambda s: s.index), time.perf_counter() - began


def probe(client: httpx.Client, urls: list[str], stop: threading.Event, pause: float) -> list[list[Sample]]:
    """GET each of `urls` in turn, one request at a time, `pause` seconds apart, until `stop`: a user's view of
    those routes (one at a time, so the prober's own requests do not compete). Samples by url, in its order."""
    samples: list[list[Sample]] = [[] for _ in urls]
    while not stop.is_set():
        for url, kept in zip(urls, samples, strict=True):
            began = time.perf_counter()
            try:
                status = client.get(url).status_code
            except httpx.HTTPError:
                status = 0
            kept.append(Sample(len(kept), status, began, time.perf_counter(), b""))
            if stop.wait(pause):
                break
    return samples


@contextmanager
def hammer(url: str, headers: dict[str, str], in_flight: int, pause: float = 0.0) -> Iterator[dict[str, Any]]:
    """`in_flight` threads POSTing `url` back to back until the block ends, in a process of their own so their
    work does not delay the prober's timing in this one (the GIL). Yields a dict filled on the way out with
    `statuses` (a Counter) and `slowest` (seconds)."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads running
    ready, stop = context.Event(), context.Event()
    results: multiprocessing.Queue[tuple[dict[int, int], float]] = context.Queue()
    process = context.Process(target=_hammer, args=(url, headers, in_flight, pause, ready, stop, results),
                              daemon=True)
    process.start()
    out: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while not ready.wait(0.1):
        if not process.is_alive() or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the ensure load did not start (exit code {process.exitcode})")
    try:
        yield out
    finally:
        stop.set()
        # Read before joining: a child whose result is still in the pipe does not exit.
        statuses, slowest = results.get(timeout=60)
        process.join(timeout=10)
        out.update(statuses=Counter(statuses), slowest=slowest)


def _hammer(url: str, headers: dict[str, str], in_flight: int, pause: float, ready: EventType, stop: EventType,
            results: multiprocessing.Queue[tuple[dict[int, int], float]]) -> None:
    statuses: Counter[int] = Counter()
    slowest = [0.0]
    lock = threading.Lock()
    started = threading.Barrier(in_flight + 1)

    def worker() -> None:
        with httpx.Client(headers=headers, timeout=60.0) as client:
            started.wait()
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    status = client.post(url).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    statuses[status] += 1
                    slowest[0] = max(slowest[0], time.perf_counter() - began)
                stop.wait(pause)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(in_flight)]
    for thread in threads:
        thread.start()
    started.wait()
    ready.set()
    for thread in threads:
        thread.join()
    results.put((dict(statuses), slowest[0]))


class Stalled:
    """A loopback listener that accepts connections and never answers: a registry that hangs."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self._listener.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="stalled-registry", daemon=True)

    @property
    def host(self) -> str:
        """host:port, as image references name it."""
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> Stalled:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                self._held.append(self._listener.accept()[0])  # held open, never read: the client waits
            except OSError:
                continue


def push_image(client: httpx.Client, host: str, repository: str, tag: str) -> str:
    """A one-layer image (an empty tar) pushed with the Distribution API; returns its reference."""
    tar = io.BytesIO()
    tarfile.open(fileobj=tar, mode="w").close()
    layer = gzip.compress(tar.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [_digest(tar.getvalue())]}}).encode()
    base = f"http://{host}/v2/{repository}"
    for blob in (config, layer):
        started = client.post(f"{base}/blobs/uploads/")
        location = str(httpx.URL(base).join(started.headers["Location"]))
        separator = "&" if "?" in location else "?"
        if client.put(f"{location}{separator}digest={_digest(blob)}", content=blob).status_code != 201:
            raise RuntimeError(f"could not push a blob to {host}")
    media = "application/vnd.oci.image.manifest.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": media,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(layer),
                            "size": len(layer)}]}
    pushed = client.put(f"{base}/manifests/{tag}", content=json.dumps(manifest), headers={"content-type": media})
    if pushed.status_code != 201:
        raise RuntimeError(f"could not push the manifest to {host}: {pushed.status_code} {pushed.text[:200]}")
    return f"{host}/{repository}:{tag}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
