"""A loopback HTTP proxy in front of a registry that answers 500 for some repositories: a registry failing for one
repository, for real, over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@contextmanager
def failing_for(upstream: str, *fragments: str) -> Iterator[str]:
    """Serve on a free 127.0.0.1 port; paths containing any of `fragments` get a 500, the rest are forwarded to
    `upstream` (host:port, plain http). Yields the proxy's host:port."""
    client = httpx.Client(timeout=10)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            if any(fragment in self.path for fragment in fragments):
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            length = int(self.headers.get("Content-Length") or 0)
            answer = client.request(self.command, f"http://{upstream}{self.path}",
                                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                                    content=self.rfile.read(length) if length else None)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            body = b"" if self.command == "HEAD" else answer.content
            self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else
                                                   answer.headers.get("Content-Length", "0")))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        client.close()
