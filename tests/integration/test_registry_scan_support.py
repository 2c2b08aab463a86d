"""What the patch scan needs from registries: creation times, bounded concurrency, Retry-After, the allowlist,
request counts, and the seeding helpers, against a real Distribution registry and stand-ins on 127.0.0.1."""

from __future__ import annotations

import email.utils
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.adapters.acr_registry import AcrRegistry
from shared.adapters.oci_registry import OciRegistry, parse_created
from shared.adapters.routed_registry import RoutedRegistry
from shared.domain.errors import RegistryUnavailable
from shared.domain.images import ImageRef
from shared.domain.outbound import host_problem
from tests.fakes.registry import FakeRegistry
from tests.registry_seed import copy_tag, delete_tag, local_registry, push_history, push_image, push_index
from tests.stack import free_port

pytestmark = pytest.mark.integration

JAN = datetime(2024, 1, 15, 8, 30, tzinfo=UTC)
FEB = datetime(2024, 2, 15, 8, 30, 0, 123456, tzinfo=UTC)
MAR = datetime(2024, 3, 15, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real docker-registry on a free loopback port (delete enabled); its host:port."""
    with local_registry(tmp_path_factory.mktemp("scan-registry")) as host:
        yield host


def fast(host: str | None = None, **options: Any) -> OciRegistry:
    """A client for plain-http loopback registries with tiny timeouts and backoff."""
    defaults: dict[str, Any] = {"connect_timeout": 0.5, "read_timeout": 1.0, "attempts": 3, "backoff": 0.01}
    insecure = options.pop("insecure", set()) | ({host} if host else set())
    return OciRegistry(insecure_registries=insecure, **(defaults | options))


def acr(host: str) -> AcrRegistry:
    return AcrRegistry(f"http://{host}", credential=None, connection_timeout=0.5, read_timeout=1.0,
                       retry_total=1, retry_backoff_factor=0.01)


def at(host: str, repository: str, tag: str | None = None, digest: str | None = None) -> ImageRef:
    return ImageRef(registry=host, repository=repository, tag=tag, digest=digest)


# --- stand-in servers ----------------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request a stand-in received."""

    method: str
    path: str
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class StandIn:
    """A threaded HTTP server on 127.0.0.1: what it was asked, how many connections it accepted, and the most
    requests it had in flight at once (in all, and per Host header)."""

    host: str = ""
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    peak: int = 0
    peak_by_host: dict[str, int] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] = self._in_flight.get(host, 0) + 1
            self.peak = max(self.peak, sum(self._in_flight.values()))
            self.peak_by_host[host] = max(self.peak_by_host.get(host, 0), self._in_flight[host])

    def leave(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] -= 1


@contextmanager
def stand_in(answer: Callable[[Seen, int], Reply], *, delay: float = 0.0) -> Iterator[StandIn]:
    """Answer each request with `answer(request, count so far)`, after `delay` seconds."""
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as registries do

        def _reply(self) -> None:
            host = self.headers.get("Host", "")
            state.enter(host)
            try:
                request = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                with state._lock:
                    state.seen.append(request)
                    count = len(state.seen)
                time.sleep(delay)
                status, headers, body = answer(request, count)
            finally:
                state.leave(host)
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

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def verify_request(self, request: Any, client_address: Any) -> bool:
            with state._lock:
                state.connections += 1
            return True

    server = Server(("127.0.0.1", 0), Handler)
    state.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def json_reply(body: dict[str, Any], media_type: str = "application/json") -> Reply:
    data = json.dumps(body).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return 200, {"Content-Type": media_type, "Docker-Content-Digest": digest}, data


CONFIG = json.dumps({"created": "2024-02-15T08:30:00.123456789Z", "os": "linux"}).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST,
                       "size": len(CONFIG)}, "layers": []}


def distribution(request: Seen) -> Reply:
    """A minimal distribution API: one image under any tag, its config blob, a tag list."""
    path = urlsplit(request.path).path
    if "/manifests/" in path:
        return json_reply(MANIFEST, str(MANIFEST["mediaType"]))
    if path.endswith(f"/blobs/{CONFIG_DIGEST}"):
        return 200, {"Content-Type": "application/octet-stream"}, CONFIG
    if path.endswith("/tags/list"):
        return json_reply({"name": "team/app", "tags": ["a", "b"]})
    return 404, {}, b""


# --- created() against the real registry -----------------------------------------------------------------------


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker-v2"])
def test_created_of_a_plain_manifest(registry: str, docker: bool) -> None:
    repo = f"scan/plain-{str(docker).lower()}"
    digest = push_image(registry, repo, "v1", created=FEB, marker="plain", docker=docker)
    with fast(registry) as client:
        assert client.created(at(registry, repo, "v1")) == FEB
        assert client.created(at(registry, repo, digest=digest)) == FEB


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_created_of_an_index_is_the_amd64_image(registry: str, docker: bool) -> None:
    repo = f"scan/multi-{str(docker).lower()}"
    index, images = push_index(registry, repo, "v1", created={"linux/arm64": JAN, "linux/amd64": MAR},
                               marker="multi", docker=docker)
    assert list(images) == ["linux/arm64", "linux/amd64"]  # amd64 is not the first entry
    with fast(registry) as client:
        assert client.created(at(registry, repo, "v1")) == MAR
        assert client.created(at(registry, repo, digest=index)) == MAR
        assert client.created(at(registry, repo, digest=images["linux/arm64"])) == JAN
        assert client.head(at(registry, repo, "v1")) == index


def test_created_of_an_index_without_amd64_is_the_first_image(registry: str) -> None:
    push_index(registry, "scan/arm", "v1", created={"linux/arm64": JAN, "linux/s390x": MAR}, marker="arm",
               platforms=("linux/arm64", "linux/s390x"))
    with fast(registry) as client:
        assert client.created(at(registry, "scan/arm", "v1")) == JAN


def test_created_of_a_missing_image_or_repository_is_none(registry: str) -> None:
    push_image(registry, "scan/present", "v1", created=JAN, marker="present")
    with fast(registry) as client:
        assert client.created(at(registry, "scan/present", "nope")) is None
        assert client.created(at(registry, "scan/absent", "v1")) is None
        assert client.created(at(registry, "scan/present", digest=DIGEST)) is None


def test_created_of_a_config_without_created_is_none(registry: str) -> None:
    push_image(registry, "scan/timeless", "v1", created=None, marker="timeless")
    with fast(registry) as client:
        assert client.created(at(registry, "scan/timeless", "v1")) is None


def test_created_of_a_reproducible_build_is_none(registry: str) -> None:
    # Reproducible builds write the Unix epoch (SOURCE_DATE_EPOCH=0) or Go's zero time: no real time.
    push_image(registry, "scan/epoch", "v1", created=datetime(1970, 1, 1, tzinfo=UTC), marker="epoch")
    with fast(registry) as client:
        assert client.created(at(registry, "scan/epoch", "v1")) is None


def test_parse_created() -> None:
    assert parse_created("2024-02-15T08:30:00.123456789Z") == FEB
    assert parse_created("2024-02-15T09:30:00.123456+01:00") == FEB
    assert parse_created("2024-02-15T08:30:00Z") == FEB.replace(microsecond=0)
    for nothing in (None, "", "yesterday", "2024-02-30T00:00:00Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
                    12345):
        assert parse_created(nothing) is None


# --- created() outages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["manifest", "blob"])
def test_created_when_the_registry_answers_500_is_unavailable(failing: str) -> None:
    def answer(request: Seen, _: int) -> Reply:
        is_blob = "/blobs/" in request.path
        if (failing == "blob") == is_blob:
            return 500, {}, b""
        return distribution(request)

    with stand_in(answer) as server, fast(server.host) as client, pytest.raises(RegistryUnavailable) as caught:
        client.created(at(server.host, "team/app", "v1"))
    assert "500" in caught.value.detail
    assert len([s for s in server.seen if ("/blobs/" in s.path) == (failing == "blob")]) == 3  # retried


def test_created_from_a_stopped_registry_is_unavailable() -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens here
    started = time.monotonic()
    with fast(host) as client, pytest.raises(RegistryUnavailable) as caught:
        client.created(at(host, "team/app", "v1"))
    assert time.monotonic() - started < 3
    assert caught.value.where == f"{host}/team/app:v1"


def test_created_of_a_config_that_does_not_match_its_digest_is_unavailable() -> None:
    def answer(request: Seen, _: int) -> Reply:
        if "/blobs/" in request.path:
            return 200, {}, json.dumps({"created": "2024-01-01T00:00:00Z"}).encode()
        return distribution(request)

    with stand_in(answer) as server, fast(server.host) as client, pytest.raises(RegistryUnavailable, match="match"):
        client.created(at(server.host, "team/app", "v1"))


def test_a_config_redirected_to_storage_is_fetched_without_the_registry_token() -> None:
    with stand_in(lambda request, _: distribution(request)) as storage:

        def answer(request: Seen, _: int) -> Reply:
            if request.path.startswith("/token"):
                return json_reply({"token": "t0k"})
            if request.headers.get("authorization") != "Bearer t0k":
                return 401, {"WWW-Authenticate": f'Bearer realm="http://{server.host}/token",service="s"'}, b""
            if "/blobs/" in request.path:
                return 307, {"Location": f"http://{storage.host}{urlsplit(request.path).path}?signed=1"}, b""
            return distribution(request)

        # The storage stand-in is on loopback: named exempt from the address check, as a CDN's public address passes.
        with stand_in(answer) as server, fast(server.host, exempt={storage.host}) as client:
            assert client.created(at(server.host, "team/app", "v1")) == FEB
        assert [urlsplit(s.path).path for s in storage.seen] == [f"/v2/team/app/blobs/{CONFIG_DIGEST}"]
        assert "authorization" not in storage.seen[0].headers


def test_a_redirect_to_a_metadata_address_is_refused() -> None:
    def answer(request: Seen, _: int) -> Reply:
        if "/blobs/" in request.path:
            return 307, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""
        return distribution(request)

    with stand_in(answer) as server, fast(server.host) as client, pytest.raises(RegistryUnavailable, match="refused"):
        client.created(at(server.host, "team/app", "v1"))


# --- AcrRegistry.created -----------------------------------------------------------------------------------------


def test_acr_created_against_the_real_registry(registry: str) -> None:
    plain = push_image(registry, "scan/acr", "v1", created=FEB, marker="acr")
    push_image(registry, "scan/acr", "timeless", created=None, marker="acr timeless")
    push_index(registry, "scan/acr", "multi", created={"linux/arm64": JAN, "linux/amd64": MAR}, marker="acr multi")
    push_image(registry, "scan/acr-docker", "v1", created=JAN, marker="acr docker", docker=True)
    client = acr(registry)
    try:
        assert client.created(at(registry, "scan/acr", "v1")) == FEB
        assert client.created(at(registry, "scan/acr", digest=plain)) == FEB
        assert client.created(at(registry, "scan/acr", "multi")) == MAR
        assert client.created(at(registry, "scan/acr-docker", "v1")) == JAN
        assert client.created(at(registry, "scan/acr", "timeless")) is None
        assert client.created(at(registry, "scan/acr", "missing")) is None
        assert client.created(at(registry, "scan/none", "v1")) is None
        with pytest.raises(ValueError, match="serves"):
            client.created(at("elsewhere.azurecr.io", "scan/acr", "v1"))
    finally:
        client.close()


def test_acr_created_outages_are_unavailable() -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailable):
        acr(host).created(at(host, "team/app", "v1"))
    with stand_in(lambda _, n: (503, {"Retry-After": "0"}, b"")) as server, \
            pytest.raises(RegistryUnavailable) as caught:
        acr(server.host).created(at(server.host, "team/app", "v1"))
    assert "503" in caught.value.detail


# --- RoutedRegistry ------------------------------------------------------------------------------------------------


def test_routed_created_goes_where_head_goes() -> None:
    home, others = FakeRegistry("home.test"), FakeRegistry()
    home.push("home.test/azureml/app:1", created=JAN)
    others.push("mcr.example.com/base:1", created=FEB)
    routed = RoutedRegistry("home.test", home, others)
    assert routed.created(at("home.test", "azureml/app", "1")) == JAN
    assert routed.created(at("mcr.example.com", "base", "1")) == FEB
    assert (home.calls["created"], others.calls["created"]) == (1, 1)


def test_routed_allowlist_covers_the_others_only() -> None:
    home, others = FakeRegistry("home.test"), FakeRegistry()
    home.push("home.test/azureml/app:1", created=JAN)
    routed = RoutedRegistry("home.test", home, others, allowed=["mcr.example.com"])
    assert routed.created(at("home.test", "azureml/app", "1")) == JAN  # the home is always allowed
    assert routed.tags("MCR.example.com", "base") == []
    for call in (lambda: routed.head(at("evil.example.com", "x", "1")),
                 lambda: routed.tags("evil.example.com", "x"),
                 lambda: routed.created(at("evil.example.com", "x", "1")),
                 lambda: routed.head(at("u:p@mcr.example.com", "x", "1"))):
        with pytest.raises(RegistryUnavailable, match=r"allowlist|refused"):
            call()
    assert sum(others.calls.values()) == 1  # only the allowed tags call reached it
    # No list: any well-formed host, but never a forged one.
    open_routes = RoutedRegistry("home.test", home, others)
    assert open_routes.head(at("anything.example", "x", "1")) is None
    with pytest.raises(RegistryUnavailable, match="refused"):
        open_routes.head(at("169.254.169.254", "latest", "1"))


# --- bounded concurrency ------------------------------------------------------------------------------------------


def test_at_most_per_registry_requests_are_in_flight_per_registry() -> None:
    with stand_in(lambda request, _: distribution(request), delay=0.05) as server:
        port = server.host.rpartition(":")[2]
        hosts = [server.host, f"localhost:{port}"]  # two registry names, one server: two sets of slots
        with fast(insecure=set(hosts), per_registry=3, read_timeout=5.0) as client, \
                ThreadPoolExecutor(max_workers=24) as pool:
            calls = [pool.submit(client.created if i % 2 else client.head, at(hosts[i % 4 // 2], "team/app", f"t{i}"))
                     for i in range(48)]
            results = [call.result() for call in calls]
    assert all(r is not None for r in results)
    assert server.peak_by_host == {hosts[0]: 3, hosts[1]: 3}  # bounded, and the bound was reached
    assert server.peak == 6


# --- Retry-After ---------------------------------------------------------------------------------------------------


def test_a_429_retry_after_is_waited_for() -> None:
    def answer(request: Seen, n: int) -> Reply:
        return (429, {"Retry-After": "1"}, b"") if n == 1 else (200, {"Docker-Content-Digest": DIGEST}, b"")

    with stand_in(answer) as server, fast(server.host) as client:
        started = time.monotonic()
        assert client.head(at(server.host, "team/app", "v1")) == DIGEST
        waited = time.monotonic() - started
    assert 1.0 <= waited < 3.0
    assert len(server.seen) == 2


def test_a_retry_after_past_the_cap_gives_up_at_once() -> None:
    with stand_in(lambda _, n: (429, {"Retry-After": "3600"}, b"")) as server, fast(server.host) as client:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable) as caught:
            client.tags(server.host, "team/app")
        assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 3600 and len(server.seen) == 1
    assert "3600" in caught.value.detail


def test_a_retry_after_date_is_honoured_and_capped() -> None:
    waits: list[float] = []
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    with stand_in(lambda _, n: (503, {"Retry-After": later}, b"") if n == 1 else distribution(_)) as server, \
            fast(server.host, sleep=waits.append) as client:
        assert client.tags(server.host, "team/app") == ["a", "b"]
    assert len(waits) == 1 and 3.5 <= waits[0] <= 5.5
    # The same date past a smaller cap: given up with the wait the registry asked for.
    with stand_in(lambda _, n: (429, {"Retry-After": later}, b"")) as server, \
            fast(server.host, sleep=waits.append, max_retry_after=2) as client, \
            pytest.raises(RegistryUnavailable) as caught:
        client.tags(server.host, "team/app")
    assert 3 <= caught.value.retry_after <= 6 and len(server.seen) == 1 and len(waits) == 1


def test_a_429_without_retry_after_backs_off_exponentially() -> None:
    waits: list[float] = []
    with stand_in(lambda _, n: (429, {}, b"")) as server, \
            fast(server.host, sleep=waits.append, backoff=0.25) as client, pytest.raises(RegistryUnavailable) as caught:
        client.head(at(server.host, "team/app", "v1"))
    assert waits == [0.25, 0.5] and caught.value.retry_after == 30


# --- the allowlist --------------------------------------------------------------------------------------------------


def test_a_registry_off_the_allowlist_is_refused_without_a_connection() -> None:
    with stand_in(lambda request, _: distribution(request)) as server:
        port = server.host.rpartition(":")[2]
        other = f"localhost:{port}"  # the same server under a name that is not on the list
        with fast(insecure={server.host, other}, allowed=[server.host]) as client:
            for call in (lambda: client.head(at(other, "team/app", "v1")),
                         lambda: client.tags(other, "team/app"),
                         lambda: client.created(at(other, "team/app", "v1"))):
                with pytest.raises(RegistryUnavailable, match="ENVHUB_ALLOWED_REGISTRIES"):
                    call()
            assert server.connections == 0 and sum(client.requests.values()) == 0
            assert client.head(at(server.host, "team/app", "v1")) is not None  # the listed one answers
        assert server.connections == 1


def test_forged_registry_names_are_refused_without_a_connection() -> None:
    with stand_in(lambda request, _: distribution(request)) as server:
        forged = f"user:secret@{server.host}"
        with fast(insecure={forged}) as client:  # no list at all: still refused
            with pytest.raises(RegistryUnavailable, match="user information") as caught:
                client.head(at(forged, "team/app", "v1"))
            assert "secret" not in str(caught.value)
        assert server.connections == 0


@pytest.mark.parametrize("host", ["u@h.example", "h.example/x", "h.example:0", "h.example:99999", "h..example",
                                  "-h.example", "h_x.example", "127.1", "2130706433", "0x7f.0.0.1", "169.254.169.254",
                                  "[fe80::1]:5000", "0.0.0.0:5000", "[::ffff:169.254.169.254]", "h.example:5000 ",
                                  "h.example\r\nX: y", "[::1"])
def test_host_problem_refuses(host: str) -> None:
    assert host_problem(host) is not None


@pytest.mark.parametrize("host", ["docker.io", "mcr.microsoft.com", "myreg.azurecr.io", "127.0.0.1:5000",
                                  "localhost:5000", "[::1]:5000", "10.0.0.7", "Registry.Example.COM:443"])
def test_host_problem_accepts(host: str) -> None:
    assert host_problem(host) is None


def test_a_token_realm_at_a_metadata_address_is_refused() -> None:
    challenge = 'Bearer realm="http://169.254.169.254/token",service="s"'
    with stand_in(lambda _, n: (401, {"WWW-Authenticate": challenge}, b"")) as server, fast(server.host) as client, \
            pytest.raises(RegistryUnavailable, match="token service"):
        client.head(at(server.host, "team/app", "v1"))
    assert len(server.seen) == 1


# --- request counting ---------------------------------------------------------------------------------------------


def test_requests_are_counted_by_method_and_registry(registry: str) -> None:
    push_image(registry, "scan/counted", "v1", created=JAN, marker="counted")
    push_index(registry, "scan/counted", "multi", created=MAR, marker="counted multi")
    with fast(registry) as client:
        client.head(at(registry, "scan/counted", "v1"))
        client.created(at(registry, "scan/counted", "v1"))  # manifest + config
        client.created(at(registry, "scan/counted", "multi"))  # index + manifest + config
        client.tags(registry, "scan/counted")
        assert client.requests == {f"HEAD {registry}": 1, f"GET {registry}": 6}


def test_request_counting_is_thread_safe() -> None:
    with stand_in(lambda request, _: distribution(request)) as server, \
            fast(server.host, per_registry=8) as client, ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: client.head(at(server.host, "team/app", f"t{i}")), range(200)))
        assert client.requests == {f"HEAD {server.host}": 200}
    assert len(server.seen) == 200


# --- the seeding helpers and the fake ------------------------------------------------------------------------------


def test_seeding_a_tag_history(registry: str) -> None:
    repo = "scan/history"
    pushed = push_history(registry, repo, [("1.0", JAN), ("1.1", FEB), ("1.2", MAR)])
    assert len(set(pushed.values())) == 3  # one distinct image per tag
    with fast(registry) as client:
        assert sorted(client.tags(registry, repo)) == ["1.0", "1.1", "1.2"]
        assert copy_tag(registry, repo, "1.2", "latest") == pushed["1.2"]
        assert client.head(at(registry, repo, "latest")) == pushed["1.2"]
        assert client.created(at(registry, repo, "latest")) == MAR
        assert delete_tag(registry, repo, "1.0") == pushed["1.0"]
        assert sorted(client.tags(registry, repo)) == ["1.1", "1.2", "latest"]
        assert client.head(at(registry, repo, "1.0")) is None
        # Deleting a manifest takes every tag on it: latest goes with 1.2.
        delete_tag(registry, repo, "latest")
        assert client.tags(registry, repo) == ["1.1"]


def test_the_fake_registry() -> None:
    fake = FakeRegistry()
    digest = fake.push("mcr.example.com/base:1", created=JAN)
    fake.push("mcr.example.com/base:latest", digest)
    fake.push("mcr.example.com/base:2", created=None)
    base = at("mcr.example.com", "base")
    assert fake.tags("mcr.example.com", "base") == ["1", "latest", "2"]
    assert fake.head(base.with_tag("latest")) == digest == fake.head(at("mcr.example.com", "base", digest=digest))
    assert fake.created(base.with_tag("1")) == JAN and fake.created(base.with_tag("2")) is None
    assert fake.head(base.with_tag("3")) is None and fake.created(base.with_tag("3")) is None
    assert fake.tags("mcr.example.com", "other") == []
    fake.untag(base.with_tag("1"))
    assert fake.head(base.with_tag("1")) is None and fake.head(at("mcr.example.com", "base", digest=digest)) == digest
    fake.delete(base.with_tag("latest"))
    assert fake.tags("mcr.example.com", "base") == ["2"]
    fake.down.add("mcr.example.com/base")
    for call in (lambda: fake.head(base), lambda: fake.tags("mcr.example.com", "base"), lambda: fake.created(base)):
        with pytest.raises(RegistryUnavailable):
            call()
    fake.down = {"mcr.example.com"}
    with pytest.raises(RegistryUnavailable):
        fake.tags("mcr.example.com", "other")
    assert fake.calls["head"] == 6 and fake.calls["created"] == 4 and fake.calls["tags"] == 5
