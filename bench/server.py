"""`envhub serve` as a subprocess for benchmarks: a free loopback port, its own data folder, waited for."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "admin-token"  # the file `envhub serve` writes into its data folder
CA = Path("tls", "ca.pem")  # the CA `envhub serve --tls` keeps in its data folder


@dataclass(frozen=True)
class Served:
    """A running server: its /api URL, the admin token it wrote, its own registry's host:port, and with --tls the
    CA that signed its certificate."""

    base: str
    token: str
    registry_host: str
    ca: Path | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header every route but health needs."""
        return {"authorization": f"Bearer {self.token}"}

    def client(self, **options: Any) -> httpx.Client:
        """A keep-alive client sending the admin token (and trusting the server's CA under --tls)."""
        if self.ca is not None:
            options.setdefault("verify", ssl.create_default_context(cafile=self.ca))
        return httpx.Client(headers=self.headers, **options)


def free_port() -> int:
    """A port the kernel has just handed out on the loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(data_dir: Path, env: Mapping[str, str] | None = None, tls: bool = False) -> Iterator[Served]:
    """`envhub serve` in its own process (so the client's threads do not share its GIL), once it answers.
    Without ENVHUB_REGISTRY in `env` it runs its own registry, on a port of its own; with `tls`, https."""
    port, registry_port = free_port(), free_port()
    log_path = data_dir.parent / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The console script's own module, run with this interpreter: the same code as .venv/bin/envhub.
    command = [sys.executable, "-m", "cli.main", "serve", "--host", HOST, "--port", str(port),
               "--data-dir", str(data_dir), "--registry-port", str(registry_port), *(["--tls"] if tls else [])]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **(env or {})}, stdout=log,
                                   stderr=subprocess.STDOUT)
    base = f"{'https' if tls else 'http'}://{HOST}:{port}/api"
    ca = data_dir / CA if tls else None
    try:
        _wait_ready(process, base, log_path, ca)
        # Written before uvicorn starts listening, so it is there once the server answers.
        token = (data_dir / ADMIN_TOKEN).read_text().strip()
        yield Served(base, token, (env or {}).get("ENVHUB_REGISTRY") or f"{HOST}:{registry_port}", ca)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, which uvicorn takes as a clean shutdown; then SIGINT ("force quit"), for clients whose pooled
    connections keep it waiting (the Azure SDK's); then SIGKILL."""
    for stop, wait in ((process.terminate, 3), (lambda: process.send_signal(signal.SIGINT), 7)):
        stop()
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    process.wait()


def _wait_ready(process: subprocess.Popen[bytes], base: str, log_path: Path, ca: Path | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"envhub serve exited with {process.returncode}:\n{tail}")
        try:
            # Under --tls the CA is written before uvicorn listens; until it is there, nothing answers anyway.
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
            if httpx.get(f"{base}/health/live", timeout=1.0, verify=verify).status_code == 200:
                return
        except (httpx.TransportError, FileNotFoundError):
            pass  # not listening yet
        time.sleep(0.1)
    raise RuntimeError(f"envhub serve did not answer /api/health/live within {START_TIMEOUT:.0f}s")
