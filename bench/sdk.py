"""Benchmark: Azure ML's SDK (create_or_update + get) against `envhub serve --tls`, vs envhub's own client."""

from __future__ import annotations

import importlib.util
import itertools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from bench.server import Served, server
from bench.timing import Row, best_of

OPERATIONS = 30  # create + get pairs per side per round
REPEATS = 5
WARMUP = 5
WORKSPACE = "bench-sdk"
IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
SHAPE = f"{OPERATIONS} create + get pairs per side, a new version each; best of {REPEATS} interleaved rounds"


def missing() -> list[str]:
    """What this benchmark needs and cannot import (azure-ai-ml is a development dependency)."""
    return [] if importlib.util.find_spec("azure.ai.ml") else ["azure-ai-ml"]


def conda(index: int) -> dict[str, Any]:
    """A small conda file, different for every version so that each registration stores new content."""
    return {"name": "env", "channels": ["conda-forge"],
            "dependencies": ["python=3.11", {"pip": [f"numpy==1.26.{index}"]}]}


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables; the whole environment is restored afterwards."""
    with mock.patch.dict(os.environ):
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield


class StaticToken:
    """A TokenCredential giving envhub's admin token for any scope."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """The same token, valid for an hour."""
        from azure.core.credentials import AccessToken
        return AccessToken(self.token, int(time.time()) + 3600)


def sdk_side(served: Served) -> Callable[[int], None]:
    """One create_or_update + get of version `index` through an MLClient pointed at envhub, as the README shows."""
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Environment

    root = served.base.removesuffix("/api")
    host = root.removeprefix("https://")
    ml = MLClient(StaticToken(served.token), "00000000-0000-0000-0000-000000000000", "envhub-rg", WORKSPACE,
                  cloud=f"envhub-{host}",
                  cloud_metadata={"resource_manager": f"{root}/api/", "storage_endpoint": host,
                                  "azure_portal": root, "active_directory": root, "aml_resource_id": root,
                                  "registry_discovery_endpoint": root},
                  enable_telemetry=False)

    def operation(index: int) -> None:
        made = ml.environments.create_or_update(Environment(name="sdk", version=str(index), image=IMAGE,
                                                            conda_file=conda(index)))
        got = ml.environments.get("sdk", version=str(index))
        _check(made.version, got.conda_file, index)
    return operation


def client_side(served: Served) -> Callable[[int], None]:
    """The same through cli.client.Client: PUT the version, then GET it."""
    from cli.client import Client

    client = Client(served.base.removesuffix("/api"), WORKSPACE)

    def operation(index: int) -> None:
        made = client.register("hub", {"image": IMAGE, "conda_file": conda(index)}, str(index))
        got = client.call("GET", client.ws(f"/environments/hub/versions/{index}"))
        _check(made["version"], got["definition"]["conda_file"], index)
    return operation


def _check(version: object, conda_file: object, index: int) -> None:
    if str(version) != str(index) or conda_file != conda(index):
        raise RuntimeError(f"version {index} came back as {version!r} with {conda_file!r}")


def rounds(operation: Callable[[int], None], versions: Iterator[int]) -> Callable[[], None]:
    """OPERATIONS operations, each on the next unused version."""
    def go() -> None:
        for _ in range(OPERATIONS):
            operation(next(versions))
    return go


def run(root: Path) -> list[Row]:
    """Serve https from a fresh data folder under `root` (worker off: nothing is built) and time both clients."""
    with server(root / "data", env={"ENVHUB_WORKER": "false"}, tls=True) as served:
        assert served.ca is not None
        # The SDK (requests) reads REQUESTS_CA_BUNDLE; cli.client reads it too, and ENVHUB_TOKEN.
        with environment({"REQUESTS_CA_BUNDLE": str(served.ca), "ENVHUB_TOKEN": served.token,
                          "SSL_CERT_FILE": None, "SSL_CERT_DIR": None, "AZUREML_CURRENT_CLOUD": None}):
            sdk, hub = sdk_side(served), client_side(served)
            sdk_versions, hub_versions = itertools.count(1), itertools.count(1)
            for _ in range(WARMUP):  # lazy imports, TLS handshakes, the SQLite connection: kept out
                sdk(next(sdk_versions))
                hub(next(hub_versions))
            sdk_time, hub_time = best_of([rounds(sdk, sdk_versions), rounds(hub, hub_versions)], REPEATS)
    sdk_ms, hub_ms = 1000 * sdk_time / OPERATIONS, 1000 * hub_time / OPERATIONS
    return [Row("Azure ML SDK create_or_update + get vs cli.client (https)",
                f"{sdk_ms:.1f} ms/pair", f"{hub_ms:.1f} ms/pair", sdk_ms / hub_ms, None, lower_is_better=True)]
