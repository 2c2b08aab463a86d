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
from typing import NoReturn

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


@contextmanager
def running_server(folder: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start `envhub serve` on a free loopback port with its data under `folder`; yield its URL."""
    port, registry_port = _free_port(), _free_port()
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
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health/live", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
