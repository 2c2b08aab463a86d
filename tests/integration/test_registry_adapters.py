"""The registry adapters against a real Distribution registry and small stand-in servers, all on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.adapters.acr_registry import AcrRegistry
from shared.adapters.oci_registry import OciRegistry
from shared.domain.errors import RegistryUnavailable
from shared.domain.images import ImageRef
from tests.support import free_port, unavailable

pytestmark = pytest.mark.integration

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "ab" * 32


def fast(host: str, **options: Any) -> OciRegistry:
    """A client for a plain-http loopback registry with tiny timeouts and backoff."""
    # No real waiting between retries: the waits asked for are tested in test_registry_scan_support.
    defaults: dict[str, Any] = {"connect_timeout": 0.5, "read_timeout": 0.5, "attempts": 3, "backoff": 0.01,
                                "sleep": lambda _: None}
    return OciRegistry(insecure_registries={host}, **(defaults | options))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `docker-registry serve` on a free loopback port; yields its host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")
    folder = tmp_path_factory.mktemp("registry")
    # Other test runs on this machine start registries on free ports too: a header only ours sends tells
    # our registry from one that won the race for the port, and a lost race is retried on another port.
    marker = uuid.uuid4().hex
    for _ in range(5):
        host = f"127.0.0.1:{free_port()}"
        config = folder / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {host}\n  headers:\n    X-Test-Registry: [{marker}]\n"
        )
        log_path = folder / "registry.log"
        with log_path.open("w") as log:
            process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline and not _ours(host, marker):
            time.sleep(0.1)
        if process.poll() is None and _ours(host, marker):
            break
        process.kill()
        process.wait(timeout=10)
    else:
        raise RuntimeError("docker-registry did not start: " + log_path.read_text())
    try:
        yield host
    finally:
        process.terminate()
        process.wait(timeout=10)


def _ours(host: str, marker: str) -> bool:
    try:
        answer = httpx.get(f"http://{host}/v2/", timeout=1)
    except httpx.TransportError:
        return False
    return answer.status_code == 200 and answer.headers.get("X-Test-Registry") == marker


def push(host: str, repository: str, *tags: str, seed: str = "") -> tuple[str, bytes]:
    """Push a one-layer OCI image under `tags`; return the manifest's digest and bytes."""
    base = f"http://{host}/v2/{repository}"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    blobs = [(b"application/vnd.oci.image.config.v1+json", config.encode()),
             (b"application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress(f"layer {repository} {seed}".encode()))]
    described = []
    with httpx.Client(timeout=5) as client:
        for media_type, data in blobs:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            started = client.post(f"{base}/blobs/uploads/")
            assert started.status_code == 202, started.text
            # copy_add_param keeps the upload's _state query; httpx 0.28 replaces a URL's query given params=.
            location = started.url.join(started.headers["Location"]).copy_add_param("digest", digest)
            done = client.put(location, content=data,
                              headers={"Content-Type": "application/octet-stream"})
            assert done.status_code == 201, done.text
            described.append({"mediaType": media_type.decode(), "digest": digest, "size": len(data)})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": described[0],
                               "layers": described[1:]}).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        for tag in tags:
            stored = client.put(f"{base}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
            assert stored.status_code == 201, stored.text
            assert stored.headers["Docker-Content-Digest"] == digest
    return digest, manifest


# --- OciRegistry against the real registry ---------------------------------------------------------------


def test_head_returns_the_digest_of_the_pushed_manifest(registry: str) -> None:
    digest, manifest = push(registry, "team/app", "v1")
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    with fast(registry) as client:
        assert client.head(ImageRef(registry=registry, repository="team/app", tag="v1")) == digest
        assert client.head(ImageRef(registry=registry, repository="team/app", digest=digest)) == digest


def test_head_of_a_missing_tag_or_repository_is_none(registry: str) -> None:
    push(registry, "team/present", "v1")
    with fast(registry) as client:
        assert client.head(ImageRef(registry=registry, repository="team/present", tag="nope")) is None
        assert client.head(ImageRef(registry=registry, repository="team/absent", tag="v1")) is None
        assert client.head(ImageRef(registry=registry, repository="team/present", digest=DIGEST)) is None


def test_tags_of_the_real_registry(registry: str) -> None:
    tags = [f"t{i}" for i in range(7)]
    push(registry, "team/paged", *tags)
    # Debian's docker-registry 2.8 ignores `n` on tags/list (distribution pages tags from v3 on), so Link
    # pagination is proved against stand-ins below; here the adapter must still collect every tag at n=2.
    with fast(registry, page_size=2) as client:
        assert sorted(client.tags(registry, "team/paged")) == tags
        assert client.tags(registry, "team/never-pushed") == []


def test_a_stopped_registry_is_unavailable_not_a_miss() -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens here
    started = time.monotonic()
    with fast(host) as client, pytest.raises(RegistryUnavailable) as caught:
        client.head(ImageRef(registry=host, repository="team/app", tag="v1"))
    assert time.monotonic() - started < 3
    assert host in caught.value.detail and caught.value.where == f"{host}/team/app:v1"
    with fast(host) as client, pytest.raises(RegistryUnavailable):
        client.tags(host, "team/app")


# --- OciRegistry against stand-in servers -------------------------------------------------------------------


@dataclass
class Seen:
    """One request a stand-in received."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


Reply = tuple[int, dict[str, str], bytes]


@contextmanager
def stand_in(answer: Callable[[Seen, int], Reply]) -> Iterator[tuple[str, list[Seen]]]:
    """A threaded HTTP server on 127.0.0.1 answering each request with `answer(request, count so far)`."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            request = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
            seen.append(request)
            status, headers, body = answer(request, len(seen))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _reply

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def ref(host: str) -> ImageRef:
    return ImageRef(registry=host, repository="team/app", tag="v1")


def test_a_server_error_is_retried() -> None:
    with stand_in(lambda _, n: (500, {}, b"") if n == 1 else (200, {"Docker-Content-Digest": DIGEST}, b"")) as (
        host, seen), fast(host) as client:
        assert client.head(ref(host)) == DIGEST
    assert [s.method for s in seen] == ["HEAD", "HEAD"]
    assert "application/vnd.docker.distribution.manifest.list.v2+json" in seen[0].headers["accept"]


def test_a_head_without_digest_header_falls_back_to_hashing_the_manifest() -> None:
    body = b'{"schemaVersion": 2}'
    with stand_in(lambda _, n: (200, {"Content-Type": OCI_MANIFEST}, body)) as (host, seen), fast(host) as client:
        assert client.head(ref(host)) == "sha256:" + hashlib.sha256(body).hexdigest()
    assert [s.method for s in seen] == ["HEAD", "GET"]


@pytest.mark.parametrize("field", ["token", "access_token"])
def test_an_anonymous_bearer_token_is_fetched_and_cached(field: str) -> None:
    def answer(request: Seen, _: int) -> Reply:
        if request.path.startswith("/token"):
            return 200, {"Content-Type": "application/json"}, json.dumps({field: "t0k", "expires_in": 300}).encode()
        if request.headers.get("authorization") == "Bearer t0k":
            return 200, {"Docker-Content-Digest": DIGEST}, b""
        challenge = f'Bearer realm="http://{host}/token",service="stand-in",scope="repository:team/app:pull"'
        return 401, {"WWW-Authenticate": challenge}, b""

    with stand_in(answer) as (host, seen), fast(host) as client:
        assert client.head(ref(host)) == DIGEST
        assert client.head(ref(host)) == DIGEST  # the cached token goes with the first request
    assert [urlsplit(s.path).path for s in seen] == ["/v2/team/app/manifests/v1", "/token",
                                                      "/v2/team/app/manifests/v1", "/v2/team/app/manifests/v1"]
    assert seen[1].query == {"service": ["stand-in"], "scope": ["repository:team/app:pull"]}
    assert "authorization" not in seen[0].headers
    assert seen[2].headers["authorization"] == seen[3].headers["authorization"] == "Bearer t0k"


def test_a_token_that_is_still_refused_is_unavailable() -> None:
    def answer(request: Seen, _: int) -> Reply:
        if request.path.startswith("/token"):
            return 200, {}, b'{"token": "weak"}'
        return 401, {"WWW-Authenticate": f'Bearer realm="http://{host}/token",service="s"'}, b""

    with stand_in(answer) as (host, seen), fast(host) as client, pytest.raises(RegistryUnavailable) as caught:
        client.head(ref(host))
    assert "401" in caught.value.detail and len(seen) == 3  # not retried: refusal is no outage


def test_forbidden_is_unavailable_and_not_retried() -> None:
    with stand_in(lambda _, n: (403, {}, b"")) as (host, seen), fast(host) as client, \
            pytest.raises(RegistryUnavailable) as caught:
        client.head(ref(host))
    assert "403" in caught.value.detail and len(seen) == 1


def test_too_many_requests_reports_retry_after_once_retries_run_out() -> None:
    with stand_in(lambda _, n: (429, {"Retry-After": "7"}, b"")) as (host, seen), fast(host) as client, \
            pytest.raises(RegistryUnavailable) as caught:
        client.tags(host, "team/app")
    assert caught.value.retry_after == 7 and len(seen) == 3


def test_a_slow_registry_times_out_as_unavailable() -> None:
    def answer(request: Seen, _: int) -> Reply:
        time.sleep(0.5)
        return 200, {"Docker-Content-Digest": DIGEST}, b""

    with stand_in(answer) as (host, seen), fast(host, read_timeout=0.1, attempts=2) as client, \
            pytest.raises(RegistryUnavailable, match="could not be reached") as caught:
        client.head(ref(host))
    assert len(seen) == 2
    assert "time" not in caught.value.detail.lower()  # a slow registry is said as a refusing one is: no detail


@pytest.mark.parametrize("absolute", [False, True])
def test_tags_follow_link_pagination(absolute: bool) -> None:
    pages = {"": (["a", "b"], "b"), "b": (["c", "d"], "d"), "d": (["e"], None)}

    def answer(request: Seen, _: int) -> Reply:
        tags, last = pages[request.query.get("last", [""])[0]]
        target = f"{'http://' + host if absolute else ''}/v2/team/app/tags/list?n=2&last={last}"
        headers = {"Link": f'<{target}>; rel="next"'} if last else {}
        return 200, headers, json.dumps({"name": "team/app", "tags": tags}).encode()

    with stand_in(answer) as (host, seen), fast(host, page_size=2) as client:
        assert client.tags(host, "team/app") == ["a", "b", "c", "d", "e"]
    assert [s.query.get("last") for s in seen] == [None, ["b"], ["d"]]
    assert seen[0].query == {"n": ["2"]}


def test_a_link_to_another_host_is_refused() -> None:
    link = '<http://127.0.0.1:1/v2/team/app/tags/list?last=b>; rel="next"'
    with stand_in(lambda _, n: (200, {"Link": link}, b'{"tags": ["a"]}')) as (host, _), fast(host) as client, \
            pytest.raises(RegistryUnavailable, match="off the registry"):
        client.tags(host, "team/app")


# --- AcrRegistry -------------------------------------------------------------------------------------------
# get_manifest calls /v2 only, so the real registry serves it anonymously over http; the tag listing is the
# ACR-only /acr/v1 API, which Distribution lacks, so that one runs against a stand-in.


def acr(host: str) -> AcrRegistry:
    return AcrRegistry(f"http://{host}", credential=None, connection_timeout=0.5, read_timeout=0.5,
                       retry_total=1, retry_backoff_factor=0.01)


def test_acr_head_against_the_real_registry(registry: str) -> None:
    digest, _ = push(registry, "team/acr", "v1", seed="acr")
    client = acr(registry)
    assert client.head(ImageRef(registry=registry, repository="team/acr", tag="v1")) == digest
    assert client.head(ImageRef(registry=registry, repository="team/acr", digest=digest)) == digest
    assert client.head(ImageRef(registry=registry, repository="team/acr", tag="missing")) is None
    assert client.head(ImageRef(registry=registry, repository="team/none", tag="v1")) is None
    with pytest.raises(ValueError, match="serves"):
        client.head(ImageRef(registry="elsewhere.azurecr.io", repository="team/acr", tag="v1"))
    client.close()


def test_acr_outages_are_unavailable() -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailable):
        acr(host).head(ref(host))
    with stand_in(lambda _, n: (503, {"Retry-After": "0"}, b"")) as (host, seen), \
            pytest.raises(RegistryUnavailable) as caught:
        acr(host).tags(host, "team/app")
    assert "503" in caught.value.detail and len(seen) == 2  # the SDK's RetryPolicy retried once


def test_acr_tags_follow_pages() -> None:
    def tag(name: str) -> dict[str, Any]:
        return {"name": name, "digest": DIGEST, "createdTime": "2024-01-01T00:00:00Z",
                "lastUpdateTime": "2024-01-01T00:00:00Z", "changeableAttributes": {}}

    def answer(request: Seen, _: int) -> Reply:
        page = ["c"] if "last" in request.query else ["a", "b"]
        headers = {} if page == ["c"] else {"Link": '</acr/v1/team/app/_tags?last=b&n=2>; rel="next"'}
        body = {"registry": host, "imageName": "team/app", "tags": [tag(t) for t in page]}
        return 200, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()

    with stand_in(answer) as (host, seen):
        assert acr(host).tags(host, "team/app") == ["a", "b", "c"]
    assert urlsplit(seen[0].path).path == "/acr/v1/team%2Fapp/_tags"  # the SDK escapes the slash; ACR accepts it
