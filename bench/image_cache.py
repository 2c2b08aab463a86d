"""Benchmark 3: ensuring images against a real Distribution registry.

Cache hits over HTTP against a bare manifest HEAD to the same registry, and a first build end to end (upload,
register, ensure, wait) against buildah doing the same bud + push on its own.
"""

from __future__ import annotations

import io
import itertools
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.server import Served, free_port, server
from bench.timing import Row, best_of
from shared.adapters.buildah import BuildahBuilder
from shared.adapters.buildah_cli import Buildah
from shared.adapters.local_registry import LocalRegistry
from shared.adapters.oci_registry import MANIFEST_TYPES
from shared.adapters.seed_image import BUSYBOX, seed_busybox
from shared.domain.builds import immutable_tag
from shared.domain.images import ImageRef

HITS = 200  # ensure calls (and HEADs) per side per round
HIT_REPEATS = 5
WARMUP = 20
BUILD_REPEATS = 3  # each round is one envhub build and one bare buildah build, a few seconds each
GOAL = 3.0  # a cache hit may cost at most 3 bare HEADs
BUILD_TIMEOUT = 180.0
POLL = 0.05  # seconds between build-status polls: small, so polling adds little to the end-to-end time
WORKSPACE = "bench"
SEED = "envhub/busybox"


def missing() -> list[str]:
    """The tools this benchmark needs that are not installed."""
    tools = [tool for tool in ("buildah", "docker-registry") if shutil.which(tool) is None]
    return tools + ([] if BUSYBOX.is_file() else ["busybox-static"])


def dockerfile(marker: str) -> str:
    """The benchmark's Dockerfile; a new marker makes a new definition hash (and a new image)."""
    return f"FROM {SEED}:latest\nRUN echo {marker} > /x\n"


def tar_gz(files: dict[str, str]) -> bytes:
    """A build context as the contexts route takes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@contextmanager
def registry(folder: Path) -> Iterator[LocalRegistry]:
    """docker-registry on a free loopback port with envhub/busybox:latest seeded into it; stopped on the way out."""
    running = LocalRegistry(folder / "registry", free_port())
    try:
        running.start()
        seeder = Buildah(folder / "seed-buildah", insecure_registries=frozenset({running.host}))
        seed_busybox(seeder, ImageRef(registry=running.host, repository=SEED, tag="latest"))
        yield running
    finally:
        running.stop()


def server_on(data_dir: Path, registry_host: str) -> AbstractContextManager[Served]:
    """envhub using `registry_host` for images and for FROM lines without a host."""
    return server(data_dir, {"ENVHUB_REGISTRY": registry_host, "ENVHUB_INSECURE_REGISTRIES": registry_host,
                             "ENVHUB_UNQUALIFIED_REGISTRY": registry_host})


def _expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}, expected {status}: {response.text[:500]}")
    return response.json() if response.content else None


class Api:
    """The calls the benchmark makes to envhub, each checked for its expected status."""

    def __init__(self, client: httpx.Client, base: str) -> None:
        self.client = client
        self.ws = f"{base}/workspaces/{WORKSPACE}"

    def register(self, name: str, marker: str) -> dict[str, Any]:
        """Upload a context with the benchmark's Dockerfile and register version 1 of `name` building it."""
        body = tar_gz({"Dockerfile": dockerfile(marker)})
        uploaded = _expect(self.client.post(f"{self.ws}/contexts", content=body,
                                             headers={"content-type": "application/gzip"}), 201)
        record: dict[str, Any] = _expect(self.client.post(f"{self.ws}/environments/{name}/versions",
                                                          json={"build": {"context": uploaded["digest"]}}), 201)
        return record

    def ensure(self, name: str, status: int) -> dict[str, Any]:
        """POST .../versions/1/image: 200 for a cache hit, 202 for a build started."""
        answer: dict[str, Any] = _expect(self.client.post(f"{self.ws}/environments/{name}/versions/1/image"), status)
        return answer

    def wait(self, build_id: str) -> dict[str, Any]:
        """Poll the build until it ends; anything but success is an error carrying the log's tail."""
        deadline = time.monotonic() + BUILD_TIMEOUT
        while time.monotonic() < deadline:
            build: dict[str, Any] = _expect(self.client.get(f"{self.ws}/builds/{build_id}"), 200)
            if build["status"] == "succeeded":
                return build
            if build["status"] in ("failed", "cancelled"):
                lines = _expect(self.client.get(f"{self.ws}/builds/{build_id}/log"), 200)["lines"]
                raise RuntimeError(f"build {build_id} {build['status']}: {build['reason']}\n" + "\n".join(lines[-20:]))
            time.sleep(POLL)
        raise RuntimeError(f"build {build_id} did not finish within {BUILD_TIMEOUT:.0f}s")


def cache_hits(api: Api, name: str) -> Callable[[], None]:
    """HITS ensure calls, each a cache hit."""
    def go() -> None:
        for _ in range(HITS):
            api.ensure(name, 200)
    return go


def heads(client: httpx.Client, manifest_url: str) -> Callable[[], None]:
    """HITS bare manifest HEADs, the request a cache hit makes of the registry."""
    def go() -> None:
        for _ in range(HITS):
            _expect_head(client, manifest_url)
    return go


def _expect_head(client: httpx.Client, manifest_url: str) -> None:
    response = client.head(manifest_url, headers={"Accept": MANIFEST_TYPES})
    if response.status_code != 200:
        raise RuntimeError(f"HEAD {manifest_url} answered {response.status_code}")


def envhub_build(api: Api) -> Callable[[], None]:
    """Upload, register a new definition, ensure it and wait for the build to succeed."""
    counter = itertools.count()

    def go() -> None:
        name = f"fresh-{next(counter)}"
        api.register(name, uuid.uuid4().hex)
        api.wait(api.ensure(name, 202)["build_id"])
    return go


def bare_build(builder: BuildahBuilder, registry_host: str, folder: Path) -> Callable[[], None]:
    """The same bud and pushes (:latest and an immutable tag, as envhub pushes) with BuildahBuilder alone."""
    folder.mkdir(parents=True, exist_ok=True)

    def go() -> None:
        marker = uuid.uuid4().hex
        context = Path(tempfile.mkdtemp(dir=folder))
        (context / "Dockerfile").write_text(dockerfile(marker))
        target = ImageRef(registry=registry_host, repository=f"azureml/azureml_{marker}", tag="latest")
        lines: list[str] = []
        try:
            builder.build_folder(context, "Dockerfile",
                          targets=[target, target.with_tag(immutable_tag(marker, datetime.now(UTC)))],
                          log=lines.append, timeout=BUILD_TIMEOUT, cancelled=lambda: False)
        except Exception as error:
            raise RuntimeError(f"bare buildah build failed: {error}\n" + "\n".join(lines[-20:])) from error
        finally:
            shutil.rmtree(context, ignore_errors=True)
    return go


def run(root: Path) -> list[Row]:
    """Registry and server under `root`; time cache hits against HEADs, and a build against bare buildah."""
    with ExitStack() as stack:
        reg = stack.enter_context(registry(root))
        served = stack.enter_context(server_on(root / "data", reg.host))
        client = stack.enter_context(served.client(timeout=30.0))
        registry_client = stack.enter_context(httpx.Client(timeout=30.0))
        api = Api(client, served.base)

        record = api.register("cached", "x")
        api.wait(api.ensure("cached", 202)["build_id"])
        manifest_url = f"http://{reg.host}/v2/{record['image']}/manifests/latest"
        hit, head = cache_hits(api, "cached"), heads(registry_client, manifest_url)
        for _ in range(WARMUP):  # first requests pay for connections and lazy imports: keep them out
            api.ensure("cached", 200)
            _expect_head(registry_client, manifest_url)
        hit_time, head_time = best_of([hit, head], HIT_REPEATS)

        builder = BuildahBuilder(root / "bare-buildah", insecure_registries=frozenset({reg.host}),
                                 unqualified_registry=reg.host)
        envhub_time, bare_time = best_of([envhub_build(api), bare_build(builder, reg.host, root / "bare")],
                                         BUILD_REPEATS)
    return [
        Row("ensure-image, cache hit", f"{hit_time / HITS * 1e3:.2f} ms/ensure",
            f"{head_time / HITS * 1e3:.2f} ms/HEAD", hit_time / head_time, GOAL, lower_is_better=True),
        Row("register → pushed image (seeded base)",
            f"{envhub_time:.1f} s ({envhub_time - bare_time:+.1f} s envhub)", f"{bare_time:.1f} s buildah",
            envhub_time / bare_time, None, lower_is_better=True),
    ]
