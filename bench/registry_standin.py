"""A recording stand-in for an OCI distribution registry: just the calls a patch scan makes, served from memory on
127.0.0.1, every request counted. Pushing thousands of tags into the real Distribution registry takes minutes; this
answers the same API (tag lists paginated with `n`/`last` and a `Link` header, manifests by tag or digest with
`Docker-Content-Digest`, config blobs carrying `created`) in microseconds."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
_ROUTE = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>tags/list|manifests|blobs)(?:/(?P<ref>[^/]+))?$")


@dataclass(frozen=True)
class Image:
    """One image: its manifest and config blob, with their digests."""

    manifest: bytes
    digest: str
    config: bytes
    config_digest: str


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(created: datetime, seed: str) -> Image:
    """A single-layer linux/amd64 image made at `created`; `seed` makes its digests its own."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": created.isoformat(),
                         "config": {"Labels": {"seed": seed}}}, sort_keys=True).encode()
    layer = _digest(seed.encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _digest(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": layer, "size": 1024}]}, sort_keys=True).encode()
    return Image(manifest, _digest(manifest), config, _digest(config))


class StandInRegistry:
    """Serves `repositories` (name -> tag -> image) until stopped; `requests` counts by "METHOD kind" (tags/list,
    manifests, blobs, other) and `asked` by (method, path) for a finer breakdown. Thread-safe."""

    def __init__(self, repositories: Mapping[str, Mapping[str, Image]]) -> None:
        self.tags = {name: sorted(tags) for name, tags in repositories.items()}  # lexical, as Distribution lists
        self.manifests: dict[tuple[str, str], Image] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}
        for name, tags in repositories.items():
            for tag, image in tags.items():
                self.manifests[(name, tag)] = self.manifests[(name, image.digest)] = image
                self.blobs[(name, image.config_digest)] = image.config
        self.requests: Counter[str] = Counter()
        self.asked: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.registry = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="registry-standin", daemon=True)

    @property
    def host(self) -> str:
        """host:port, as image references name it."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def total(self) -> int:
        """Every request answered so far."""
        with self._lock:
            return sum(self.requests.values())

    def snapshot(self) -> Counter[str]:
        """A copy of `requests`, to subtract from a later one."""
        with self._lock:
            return Counter(self.requests)

    def __enter__(self) -> StandInRegistry:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def count(self, method: str, kind: str, path: str) -> None:
        with self._lock:
            self.requests[f"{method} {kind}"] += 1
            self.asked[(method, path)] += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    registry: StandInRegistry


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections, as with a real registry
    disable_nagle_algorithm = True  # headers and body go out in two writes; never wait for a delayed ACK

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: thousands of requests per run."""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        registry = cast(_Server, self.server).registry
        url = urlsplit(self.path)
        route = _ROUTE.match(url.path)
        method = "GET" if body else "HEAD"
        registry.count(method, route["kind"] if route else "other", url.path)
        if url.path in ("/v2", "/v2/"):
            return self._send(200, b"{}", "application/json", body)
        if route is None:
            return self._send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', "application/json", body)
        name, kind, ref = route["name"], route["kind"], route["ref"] or ""
        if kind == "tags/list" and name in registry.tags:
            return self._tags(registry, name, parse_qs(url.query), body)
        if kind == "manifests" and (image := registry.manifests.get((name, ref))) is not None:
            return self._send(200, image.manifest, MANIFEST_TYPE, body, {"Docker-Content-Digest": image.digest})
        if kind == "blobs" and (blob := registry.blobs.get((name, ref))) is not None:
            return self._send(200, blob, "application/octet-stream", body, {"Docker-Content-Digest": ref})
        return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json", body)

    def _tags(self, registry: StandInRegistry, name: str, query: dict[str, list[str]], body: bool) -> None:
        """Distribution's pagination: tags after `last`, at most `n` of them (all without `n`), and a `Link` to
        the next page while more remain."""
        tags = registry.tags[name]
        last = query.get("last", [""])[0]
        start = next((i for i, tag in enumerate(tags) if tag > last), len(tags)) if last else 0
        n = int(query["n"][0]) if "n" in query else len(tags)
        page = tags[start:start + n]
        headers: dict[str, str] = {}
        if start + n < len(tags) and page:
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
        data = json.dumps({"name": name, "tags": page}).encode()
        self._send(200, data, "application/json", body, headers)

    def _send(self, status: int, data: bytes, media: str, body: bool, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)
