"""Azurite (the Azure Storage emulator) as a child process: blob and queue services on free loopback ports."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from shared.adapters.children import die_with_parent

EMULATORS = Path(__file__).resolve().parents[2] / "emulators" / "node_modules" / ".bin"
# The emulator's one well-known account; its key is published in Azure's documentation, not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SERVICES = ("blob", "queue")
_LISTENING = re.compile(r"Azurite (\w+) service successfully listens on (\S+)")  # as azurite-blob/-queue log it


class AzuriteUnavailable(RuntimeError):
    """Azurite did not start."""


class AzuriteNotInstalled(AzuriteUnavailable):
    """Node or the Azurite package is missing (`make emulators` installs both)."""


class Azurite:
    """Azurite's blob and queue services, each its own child process (no table service is needed).

    Kept in memory unless `data_dir` is given, and stopped with `stop()` or at the end of a `with`."""

    def __init__(self, *, data_dir: Path | None = None, bin_dir: Path = EMULATORS,
                 start_timeout: float = 30.0) -> None:
        self.data_dir = data_dir
        self.bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.endpoints: dict[str, str] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: tempfile.TemporaryDirectory[str] | None = None

    @property
    def blob_endpoint(self) -> str:
        """The blob service's URL, account included (path-style, as for every emulator)."""
        return f"{self._endpoint('blob')}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        """The queue service's URL, account included."""
        return f"{self._endpoint('queue')}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A connection string for both services (what ENVHUB_STORAGE_CONNECTION_STRING takes)."""
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint}")

    def _endpoint(self, service: str) -> str:
        if service not in self.endpoints:
            raise AzuriteUnavailable("Azurite is not running; call start() first")
        return self.endpoints[service]

    def start(self) -> Azurite:
        """Start both services and return once each answers HTTP; raise AzuriteUnavailable otherwise."""
        node = shutil.which("node")
        if node is None:
            raise AzuriteNotInstalled("node is not installed; run `make emulators` (it installs nodejs and Azurite)")
        scripts = {service: self.bin_dir / f"azurite-{service}" for service in SERVICES}
        missing = [str(path) for path in scripts.values() if not path.exists()]
        if missing:
            raise AzuriteNotInstalled(f"Azurite is not installed ({', '.join(missing)} missing); run `make emulators`")
        self._logs = tempfile.TemporaryDirectory(prefix="azurite-")
        try:
            for service, script in scripts.items():
                self._spawn(node, service, script)
            self._wait()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, node: str, service: str, script: Path) -> None:
        assert self._logs is not None
        # Port 0: the service binds a free port itself and logs it, so parallel test workers never race
        # between picking a port and binding it.
        storage = ["--inMemoryPersistence"] if self.data_dir is None else ["--location", str(self.data_dir)]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [node, str(script), f"--{service}Host", "127.0.0.1", f"--{service}Port", "0", *storage,
                "--skipApiVersionCheck",  # the SDKs may be newer than this Azurite release
                "--loose",  # ignore headers Azurite does not implement instead of refusing the request
                "--silent",  # no access log
                "--disableTelemetry"]  # it would otherwise try to report to the internet
        with (Path(self._logs.name) / f"{service}.log").open("wb") as log:
            self._processes[service] = subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.data_dir or self._logs.name, preexec_fn=die_with_parent)

    def _log(self, service: str) -> str:
        assert self._logs is not None
        return (Path(self._logs.name) / f"{service}.log").read_text(errors="replace")

    def _wait(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        for service, process in self._processes.items():
            while service not in self.endpoints:
                found = {m[0].lower(): m[1] for m in _LISTENING.findall(self._log(service))}
                if service in found and _answers(found[service]):
                    self.endpoints[service] = found[service].rstrip("/")
                elif process.poll() is not None:
                    raise AzuriteUnavailable(f"Azurite's {service} service exited ({process.returncode}):\n"
                                             + self._log(service))
                elif time.monotonic() > deadline:
                    raise AzuriteUnavailable(f"Azurite's {service} service did not answer within "
                                             f"{self.start_timeout:.0f}s:\n" + self._log(service))
                else:
                    time.sleep(0.05)

    def stop(self) -> None:
        """Stop both services (in-memory data is gone with them)."""
        for process in self._processes.values():
            process.terminate()
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        self.endpoints.clear()
        if self._logs is not None:
            self._logs.cleanup()
            self._logs = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)  # any HTTP answer will do (unauthenticated, it is a 4xx)
    except httpx.TransportError:
        return False
    return True
