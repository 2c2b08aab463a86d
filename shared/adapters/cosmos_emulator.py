"""A Cosmos DB API server (emulators/, from `make emulators`) run as a child process on a free loopback port."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from shared.adapters.children import die_with_parent

EMULATORS = Path(__file__).resolve().parents[2] / "emulators"
PACKAGE = EMULATORS / "node_modules" / "@vercel" / "cosmosdb-server"
# The package's own server with keep-alive on: its CLI closes every connection, so each SDK call would pay a new
# TLS handshake (and urllib3 a new SSL context). The long idle timeout keeps the server from closing a
# connection just as the client reuses it.
_LAUNCH = """
const { createHttpsServer } = require(process.argv[1]);
const server = createHttpsServer({ keepAlive: true });
server.keepAliveTimeout = 600000;
server.listen(0, "127.0.0.1", () => {
  console.log(`Ready to accept HTTPS connections at 127.0.0.1:${server.address().port}`);
});
"""
# The key every Cosmos DB emulator publishes. This server checks no signature at all, but the SDK signs each
# request with the key, so it must be valid base64; the published one keeps clients' configuration familiar.
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
_READY = re.compile(r"Ready to accept HTTPS connections at [^\s:]+:(\d+)")


class CosmosEmulatorUnavailable(RuntimeError):
    """The server did not start."""


class CosmosEmulatorNotInstalled(CosmosEmulatorUnavailable):
    """Node or the server's package is missing (`make emulators` installs both)."""


class CosmosEmulator:
    """Start with `start()` (or `with`), use `endpoint` and `key`, end with `stop()`. In-memory: every start is
    empty, and the server ends with the process that started it."""

    def __init__(self, *, start_timeout: float = 30.0) -> None:
        self.start_timeout = start_timeout
        self.key = EMULATOR_KEY
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The server's URL (https, self-signed certificate)."""
        if self._port is None:
            raise RuntimeError("the Cosmos DB emulator is not running")
        return f"https://127.0.0.1:{self._port}/"

    def start(self) -> CosmosEmulator:
        """Start the server on a port the kernel picks, and wait until it accepts connections."""
        node = shutil.which("node")
        if node is None or not (PACKAGE / "package.json").is_file():
            missing = "node" if node is None else str(PACKAGE)
            raise CosmosEmulatorNotInstalled(f"the Cosmos DB emulator needs {missing}: run `make emulators`")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- open for the server's whole life, closed by stop()
        # Port 0 and the port the server reports: no window in which another process can take a probed port.
        self._process = subprocess.Popen(  # noqa: S603 -- a fixed argument list, no shell
            [node, "-e", _LAUNCH, str(PACKAGE)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # the server must not outlive a killed test run
        )
        deadline = time.monotonic() + self.start_timeout
        while self._port is None:
            self._port = self._reported_port()
            if self._port is None and (self._process.poll() is not None or time.monotonic() > deadline):
                output = self.output()
                self.stop()
                raise CosmosEmulatorUnavailable(f"the Cosmos DB emulator did not start: {output[-2000:]}")
            time.sleep(0.05)
        self._wait_for_port(deadline)
        return self

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        process, self._process, self._port = self._process, None, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        """What the server printed so far (for failure messages)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> CosmosEmulator:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def _reported_port(self) -> int | None:
        found = _READY.search(self.output())
        return None if found is None else int(found.group(1))

    def _wait_for_port(self, deadline: float) -> None:
        """The server prints its line once listening; a connect proves the socket takes connections."""
        assert self._port is not None
        while True:
            try:
                socket.create_connection(("127.0.0.1", self._port), timeout=1).close()
                return
            except OSError as error:
                if time.monotonic() > deadline:
                    self.stop()
                    raise CosmosEmulatorUnavailable(f"the Cosmos DB emulator does not answer: {error}") from error
                time.sleep(0.05)
