"""`envhub serve --tls` for Azure ML's SDK tests: started on free ports, waited for, and an MLClient pointed at it."""

from __future__ import annotations

import os
import signal
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
import pytest
from azure.ai.ml import MLClient
from azure.core.credentials import AccessToken

from tests.support import REPO, free_port

WORKSPACE = "sdk-ws"
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Served:
    """A running `envhub serve --tls`: its https URL and data folder (its CA and admin token are there)."""

    url: str
    data: Path

    @property
    def ca(self) -> Path:
        return self.data / "tls" / "ca.pem"

    @property
    def token(self) -> str:
        return (self.data / "admin-token").read_text().strip()

    def api(self) -> httpx.Client:
        """envhub's own API, as the admin."""
        return httpx.Client(base_url=f"{self.url}/api", verify=ssl.create_default_context(cafile=self.ca), timeout=30,
                            headers={"authorization": f"Bearer {self.token}"})


class StaticToken:
    """A TokenCredential giving the same envhub token for any scope."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@contextmanager
def serving_tls(folder: Path, *flags: str, env: Mapping[str, str] | None = None) -> Iterator[Served]:
    """`envhub serve --tls [flags]` with its data under `folder`, once it answers over https with its own CA."""
    port = free_port()
    served = Served(f"https://127.0.0.1:{port}", folder / "data")
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--data-dir", str(served.data),
             "--registry-port", str(free_port()), "--tls", *flags], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _up(served):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("envhub serve --tls did not start: " + log_path.read_text())
                time.sleep(0.1)
            yield served
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM; then SIGINT, which uvicorn takes as "force quit" when the SDK's pooled connections keep it waiting."""
    process.terminate()
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


def _up(served: Served) -> bool:
    if not served.ca.is_file() or not (served.data / "admin-token").is_file():
        return False
    try:
        verify = ssl.create_default_context(cafile=served.ca)
        return httpx.get(f"{served.url}/api/health/live", verify=verify, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def ml_client(server: Served, token: str, monkeypatch: pytest.MonkeyPatch, storage_endpoint: str | None = None
              ) -> MLClient:
    """An MLClient pointed at envhub as the README shows it, trusting the server's CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca))
    monkeypatch.delenv("AZUREML_CURRENT_CLOUD", raising=False)  # the SDK sets it; restored after the test
    host = server.url.removeprefix("https://")
    return MLClient(StaticToken(token), "00000000-0000-0000-0000-000000000000", "envhub-rg", WORKSPACE,
                    cloud=f"envhub-{host}",  # a cloud name is registered once per process: one per server
                    cloud_metadata={"resource_manager": f"{server.url}/api/",
                                    "storage_endpoint": storage_endpoint or host,
                                    "azure_portal": server.url, "active_directory": server.url,
                                    "aml_resource_id": server.url, "registry_discovery_endpoint": server.url},
                    enable_telemetry=False)
