"""Seed a local Distribution registry with tag histories in milliseconds: no buildah, just the distribution API.

Every image is a tiny config blob (its `created` and a marker that makes it distinct) and a manifest with no
layers. Use with a registry from `local_registry()` below (docker-registry only), `tests.stack.running_registry`
or `shared.adapters.local_registry.LocalRegistry`; all serve plain http on 127.0.0.1 with delete enabled.

    with local_registry(tmp_path) as host:
        history = push_history(host, "azureml/base", [("20240101", jan), ("20240201", feb)])
        copy_tag(host, "azureml/base", "20240201", "latest")    # a mutable tag: same digest
        delete_tag(host, "azureml/base", "20240101")             # gone (it had an image of its own)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shared.adapters.local_registry import LocalRegistry
from shared.adapters.oci_registry import MANIFEST_TYPES
from shared.domain.errors import RegistryUnavailable
from tests.stack import free_port
from tests.support import unavailable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
TWO_PLATFORMS = ("linux/arm64", "linux/amd64")  # amd64 second, so choosing it is never an accident of order


@contextmanager
def local_registry(folder: Path) -> Iterator[str]:
    """docker-registry on a free loopback port (skipped, or failed in CI, when not installed); yields host:port.

    LocalRegistry refuses a port that already has a registry: a port another run took in the meantime is
    refused, and another is tried."""
    if shutil.which("docker-registry") is None:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")
    for attempt in range(5):
        registry = LocalRegistry(folder / f"registry-{attempt}", free_port())
        try:
            registry.start()
        except RegistryUnavailable:
            continue
        if registry.process is not None:
            break
    else:
        raise RuntimeError("no free port for docker-registry after 5 tries")
    try:
        yield registry.host
    finally:
        registry.stop()


def rfc3339(when: datetime) -> str:
    """A time as image configs write it: UTC, Z, nanosecond-style fraction when there is one."""
    when = when.astimezone(UTC)
    fraction = f".{when.microsecond:06d}000" if when.microsecond else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def push_image(host: str, repo: str, tag: str | None, *, created: datetime | None, marker: str,
               docker: bool = False, platform: str = "linux/amd64", client: httpx.Client | None = None) -> str:
    """Push a layerless image made at `created` (None: a config without `created`) under `tag` (None: by digest
    only, as an index's entries are); `marker` makes its config, so its digest, distinct. An OCI manifest, or a
    Docker v2 schema 2 one with `docker`. Returns the manifest digest."""
    os_name, _, architecture = platform.partition("/")
    config: dict[str, Any] = {"architecture": architecture, "os": os_name,
                              "config": {"Labels": {"envhub.test.marker": marker}},
                              "rootfs": {"type": "layers", "diff_ids": []}}
    if created is not None:
        config["created"] = rfc3339(created)
    with _client(client) as http:
        data = json.dumps(config, sort_keys=True).encode()
        config_digest = upload_blob(host, repo, data, client=http)
        manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
                    "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                               "digest": config_digest, "size": len(data)},
                    "layers": []}
        return put_manifest(host, repo, tag, manifest, client=http)


def push_history(host: str, repo: str, history: Sequence[tuple[str, datetime | None]], *,
                 docker: bool = False) -> dict[str, str]:
    """Push one distinct image per (tag, created), in order; return tag -> digest."""
    with httpx.Client(timeout=10) as http:
        return {tag: push_image(host, repo, tag, created=created, marker=f"{repo}:{tag}", docker=docker, client=http)
                for tag, created in history}


def push_index(host: str, repo: str, tag: str, *, created: Mapping[str, datetime | None] | datetime,
               marker: str, platforms: Sequence[str] = TWO_PLATFORMS,
               docker: bool = False) -> tuple[str, dict[str, str]]:
    """Push a multi-platform index (an OCI index, or a Docker manifest list with `docker`) under `tag`: one image
    per platform ("os/arch"), in the order given, each made at `created[platform]` (or all at `created`).
    Returns the index digest and platform -> image digest."""
    images: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    with httpx.Client(timeout=10) as http:
        for platform in platforms:
            when = created if isinstance(created, datetime) else created.get(platform)
            digest = push_image(host, repo, None, created=when, marker=f"{marker} {platform}", docker=docker,
                                platform=platform, client=http)
            images[platform] = digest
            size = len(_get_manifest(http, host, repo, digest)[0])
            os_name, _, architecture = platform.partition("/")
            entries.append({"mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST, "digest": digest, "size": size,
                            "platform": {"architecture": architecture, "os": os_name}})
        index = {"schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX, "manifests": entries}
        return put_manifest(host, repo, tag, index, client=http), images


def copy_tag(host: str, repo: str, src: str, dst: str) -> str:
    """Point `dst` at the manifest `src` names (the same bytes, so the same digest); return that digest."""
    with httpx.Client(timeout=10) as http:
        body, media_type = _get_manifest(http, host, repo, src)
        stored = http.put(f"http://{host}/v2/{repo}/manifests/{dst}", content=body,
                          headers={"Content-Type": media_type})
        _expect(stored, 201)
        return str(stored.headers["Docker-Content-Digest"])


def delete_tag(host: str, repo: str, tag: str) -> str:
    """Delete the manifest `tag` names; return its digest.

    The distribution API deletes manifests, not tags: every tag naming that manifest goes with it. To remove one
    tag of a history, give it an image of its own first (push_image/push_history with a distinct marker), never
    a copy_tag of another tag's image."""
    with httpx.Client(timeout=10) as http:
        found = http.head(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
        _expect(found, 200)
        digest = str(found.headers["Docker-Content-Digest"])
        _expect(http.delete(f"http://{host}/v2/{repo}/manifests/{digest}"), 202)
        return digest


def upload_blob(host: str, repo: str, data: bytes, *, client: httpx.Client | None = None) -> str:
    """A monolithic blob upload: POST to start, PUT the bytes with their digest to the Location (relative or
    absolute, with or without a query of its own). Returns the digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with _client(client) as http:
        started = http.post(f"http://{host}/v2/{repo}/blobs/uploads/")
        _expect(started, 202)
        # copy_add_param keeps the upload's own query (_state); httpx replaces a URL's query when given params=.
        location = started.url.join(started.headers["Location"]).copy_add_param("digest", digest)
        done = http.put(location, content=data, headers={"Content-Type": "application/octet-stream"})
        _expect(done, 201)
    return digest


def put_manifest(host: str, repo: str, reference: str | None, manifest: Mapping[str, Any], *,
                 client: httpx.Client | None = None) -> str:
    """Store a manifest under a tag, or by its own digest when `reference` is None; return the digest."""
    body = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    with _client(client) as http:
        stored = http.put(f"http://{host}/v2/{repo}/manifests/{reference or digest}", content=body,
                          headers={"Content-Type": str(manifest["mediaType"])})
        _expect(stored, 201)
    if stored.headers.get("Docker-Content-Digest") != digest:
        raise AssertionError(f"the registry stored {stored.headers.get('Docker-Content-Digest')}, not {digest}")
    return digest


def _get_manifest(http: httpx.Client, host: str, repo: str, reference: str) -> tuple[bytes, str]:
    answer = http.get(f"http://{host}/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES})
    _expect(answer, 200)
    return answer.content, answer.headers["Content-Type"]


@contextmanager
def _client(given: httpx.Client | None) -> Iterator[httpx.Client]:
    if given is not None:
        yield given
        return
    with httpx.Client(timeout=10) as http:
        yield http


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise AssertionError(f"{response.request.method} {response.url} answered {response.status_code}, "
                             f"not {status}: {response.text[:300]}")
