"""Test helpers: where the corpus is, and skips that become failures in CI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def strict() -> bool:
    """In CI (or when asked) a missing tool or corpus fails instead of skipping."""
    return os.environ.get("CI") == "true" or os.environ.get("ENVHUB_REQUIRE_INTEGRATION") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine, fail in CI."""
    if strict():
        pytest.fail(f"required for this run but missing: {reason}")
    pytest.skip(reason)


def corpus() -> Path:
    """The shared corpus folder beside the repository."""
    if not CORPUS.is_dir():
        unavailable(f"the corpus is not beside this clone (expected ../shared/corpus from {REPO.name})")
    return CORPUS


def example_yamls() -> Iterator[Path]:
    """Every environment YAML among the corpus examples."""
    if not CORPUS.is_dir():
        return iter(())
    found = [p for p in sorted((CORPUS / "examples").glob("*/*")) if p.suffix in (".yml", ".yaml")
             and "$schema" in p.read_text(errors="replace")[:300] and "environment.schema" in p.read_text()]
    return iter(found)


def curated_assets() -> Iterator[Path]:
    """Every curated asset folder of the corpus."""
    if not CORPUS.is_dir():
        return iter(())
    return iter(sorted(p for p in (CORPUS / "curated").iterdir() if (p / "asset.yaml").is_file()))


def conda_specs() -> Iterator[Path]:
    """Every conda specification of the corpus."""
    if not CORPUS.is_dir():
        return iter(())
    return iter(sorted((CORPUS / "conda").glob("*.y*ml")))


def ids(paths: Iterator[Path]) -> list[Path]:
    """Materialise a corpus listing; an empty one gets a placeholder that skips (or fails in CI)."""
    found = list(paths)
    return found or [CORPUS / "missing"]


SERVER_TOKENS: dict[str, str] = {}  # base URL of each running test server -> its admin token


class ServerUrl(str):
    """A running server's base URL that also carries its admin token."""

    token: str

    def __new__(cls, url: str, token: str) -> ServerUrl:
        made = super().__new__(cls, url)
        made.token = token
        return made

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def auth_for(url: str) -> dict[str, str]:
    """The Authorization header of the test server `url` belongs to (none for other URLs)."""
    for base, token in SERVER_TOKENS.items():
        if url == base or url.startswith(base + "/"):
            return {"authorization": f"Bearer {token}"}
    return {}


def cli_env(*args: str) -> dict[str, str]:
    """ENVHUB_TOKEN for a CLI call whose `--url` is a running test server."""
    urls = [a if "://" in a else f"http://{a}" for a in args]  # `--url 127.0.0.1:PORT` means http too
    found = next((auth_for(u) for u in urls if auth_for(u)), {})
    return {"ENVHUB_TOKEN": found["authorization"].removeprefix("Bearer ")} if found else {}


class _Authed:
    """httpx's module functions, adding the admin token of the test server a URL belongs to."""

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        kwargs["headers"] = {**auth_for(str(url)), **(kwargs.get("headers") or {})}
        return httpx.request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


authed = _Authed()


@contextmanager
def running_server(folder: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[ServerUrl]:
    """Start `envhub serve` on a free loopback port with its data under `folder`; yield its URL."""
    port, registry_port = free_port(), free_port()
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--data-dir", str(folder / "data"),
             "--registry-port", str(registry_port), *extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not _healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("envhub serve did not start: " + log_path.read_text())
                time.sleep(0.1)
            token = (folder / "data" / "admin-token").read_text().strip()
            SERVER_TOKENS[url] = token
            yield ServerUrl(url, token)
        finally:
            SERVER_TOKENS.pop(url, None)
            process.terminate()
            process.wait(timeout=10)


def free_port() -> int:
    """A port the kernel has just handed out on the loopback address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health/live", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
