"""A TLS proxy before the Cosmos DB emulator that drops chosen writes' connections, before or after they land."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import httpx

from shared.adapters.cosmos_emulator import PACKAGE

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Faults:
    """Which writes to drop: the writes are counted from `arm()`, and those whose number is in `drop` lose their
    connection `when` ("before" the emulator sees them, or "after" it answered)."""

    drop: set[int] = field(default_factory=set)
    when: str = "before"
    containers: tuple[str, ...] = ()  # only writes to these count (all when empty)
    writes: int = 0  # document writes since arm()
    dropped: list[str] = field(default_factory=list)  # "METHOD path" of each dropped write
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, *numbers: int, when: str = "before", containers: tuple[str, ...] = ()) -> None:
        """Drop the writes with these numbers, counting from 1 now; `arm()` drops nothing."""
        with self.lock:
            self.drop, self.when, self.containers, self.writes, self.dropped = set(numbers), when, containers, 0, []

    def decide(self, method: str, path: str) -> str | None:
        """None to pass the request on, else when to drop it."""
        if method not in WRITES or "/docs" not in path:
            return None
        if self.containers and not any(f"/colls/{name}/" in path for name in self.containers):
            return None
        with self.lock:
            self.writes += 1
            if self.writes not in self.drop:
                return None
            self.dropped.append(f"{method} {path}")
            return self.when


@contextmanager
def dropping_proxy(upstream: str) -> Iterator[tuple[str, Faults]]:
    """Serve TLS on a free loopback port in front of `upstream` (the emulator's https URL); yield the proxy's URL
    and its Faults. The account document names the proxy, so the SDK's endpoint discovery keeps to it."""
    target = urlparse(upstream)
    faults = Faults()
    client = httpx.Client(verify=False, timeout=30)  # the emulator's certificate is self-signed, on loopback

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK expects

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            drop = faults.decide(self.command, self.path)
            if drop == "before":
                self.close_connection = True  # closed without an answer: the emulator never saw it
                return
            answer = client.request(self.command, f"{upstream.rstrip('/')}{self.path}", content=body,
                                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            if drop == "after":
                self.close_connection = True  # the emulator made the write; its answer is lost
                return
            content = answer.content.replace(f"{target.hostname}:{target.port}".encode(), own.encode())
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length", "content-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(PACKAGE / "cert.pem", PACKAGE / "key.pem")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    own = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://{own}/", faults
    finally:
        server.shutdown()
        server.server_close()
        client.close()
