"""The Distribution registry (Debian's docker-registry) as a child process, storage under the data folder.

One `envhub serve` owns a data folder's registry: it holds an exclusive lock on `<folder>/serve.lock` (with
its pid and the registry's in it) while serving. A second serve on the same data folder, or any serve whose
registry port already has a registry it did not start, refuses to start instead of sharing storage silently.
While serving, `supervise` restarts the registry when it dies or stops answering, with capped backoff."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from shared.adapters.children import die_with_parent
from shared.domain.errors import RegistryUnavailable

log = logging.getLogger(__name__)

_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


class LocalRegistry:
    """Starts `docker-registry serve` on 127.0.0.1:<port> and keeps it running until `stop`."""

    def __init__(self, folder: Path, port: int, *, check_interval: float = 1.0, unanswered_limit: int = 3,
                 backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.folder = folder
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0  # how many times the supervisor started the registry again
        self._check_interval = check_interval
        self._unanswered_limit = unanswered_limit  # failed checks in a row before a live child counts as stalled
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lock_file: IO[str] | None = None
        self._guard = threading.Lock()  # start, restart and stop never overlap
        self._stopping = False

    @property
    def host(self) -> str:
        """host:port, as image references name it."""
        return f"127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.folder / "config.yml"

    def _answering(self, timeout: float = 1.0) -> bool:
        try:
            return httpx.get(f"http://{self.host}/v2/", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, wait: float = 20.0) -> None:
        """Take the data folder's lock, start the registry and wait until it answers.

        Raises RegistryUnavailable when another serve holds the lock, when the port already has a registry this
        data folder did not start, or when the registry does not come up."""
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryUnavailable("docker-registry is not installed (Debian package docker-registry); "
                                      "`make run` installs it", where="docker-registry")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._stop_orphan()
            if self._answering():
                raise RegistryUnavailable(f"port {self.port} already has a registry (another envhub serve?); "
                                          "choose --registry-port", where=self.host)
            with self._guard:
                self._stopping = False
                self._spawn(binary, wait)
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> None:
        path = self.folder / "serve.lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _read_record(handle.read()).get("serve_pid", "?")
            handle.close()
            raise RegistryUnavailable(
                f"another envhub serve (pid {holder}) runs the registry of {self.folder}; "
                "give this one its own --data-dir", where=self.host) from None
        self._lock_file = handle

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _record(self) -> None:
        """Write who serves (this process) and the registry's pid into the held lock file."""
        assert self._lock_file is not None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(json.dumps({"serve_pid": os.getpid(), "port": self.port,
                                          "registry_pid": None if self.process is None else self.process.pid}))
        self._lock_file.flush()

    def _stop_orphan(self) -> None:
        """A registry a killed serve of this data folder left running (where no parent-death signal reached it)
        is ours to replace: stop it. Only a process whose command line names our config file is touched."""
        assert self._lock_file is not None
        self._lock_file.seek(0)
        pid = _read_record(self._lock_file.read()).get("registry_pid")
        if not isinstance(pid, int) or pid <= 0:
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if str(self.config).encode() not in cmdline:
            return
        log.warning("stopping registry pid %s left behind by an earlier envhub serve of %s", pid, self.folder)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _spawn(self, binary: str, wait: float) -> None:
        """Start the child and wait until it answers (the caller holds _guard)."""
        self.config.write_text(_CONFIG.format(root=self.folder / "storage", port=self.port))
        with (self.folder / "registry.log").open("ab") as out:
            self.process = subprocess.Popen([binary, "serve", str(self.config)], stdout=out,
                                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self._record()
        deadline = time.monotonic() + wait
        while not self._answering():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._end_child()
                raise RegistryUnavailable(
                    f"the local registry did not start on {self.host}; see {self.folder / 'registry.log'}",
                    where=self.host,
                )
            time.sleep(0.1)

    def _end_child(self) -> None:
        """Stop the child (SIGKILL when SIGTERM is not enough, as for a stopped process) and reap it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def healthy(self) -> bool:
        """The child runs (a dead one is reaped here) and answers."""
        process = self.process
        return process is not None and process.poll() is None and self._answering()

    def supervise(self, stop: threading.Event) -> None:
        """Until `stop` is set: every check_interval, see that the registry is alive and answering; restart it
        when it died or failed `unanswered_limit` checks in a row, backing off exponentially (capped) while
        restarts fail. Run in a thread of its own; children it starts end with that thread."""
        unanswered = 0
        failures = 0
        while not stop.wait(self._check_interval):
            process = self.process
            if process is not None and process.poll() is None:  # poll() reaps a child that died
                if self._answering():
                    unanswered = 0
                    continue
                unanswered += 1
                if unanswered < self._unanswered_limit:
                    continue
                why = f"did not answer {unanswered} checks in a row"
            else:
                why = "exited" if process is None else f"exited with {process.returncode}"
            unanswered = 0
            while not stop.is_set():
                if self._restart(why):
                    failures = 0
                    break
                failures += 1
                delay = min(self._max_backoff, self._backoff * 2 ** (failures - 1))
                log.warning("local registry restart %d failed; next try in %.1f s", failures, delay)
                if stop.wait(delay):
                    return

    def _restart(self, why: str) -> bool:
        binary = shutil.which("docker-registry")
        with self._guard:
            if self._stopping:
                return True
            log.warning("local registry on %s %s; restarting it", self.host, why)
            self._end_child()
            if binary is None:
                return False
            try:
                self._spawn(binary, wait=10.0)
            except RegistryUnavailable as error:
                log.warning("%s", error)
                return False
            self.restarts += 1
            log.warning("local registry on %s restarted (restart %d, pid %d)", self.host, self.restarts,
                        self.process.pid if self.process else -1)
            return True

    def stop(self) -> None:
        """Stop the registry this object started and release the data folder's lock."""
        with self._guard:
            self._stopping = True
            self._end_child()
        self._release_lock()


def _read_record(text: str) -> dict[str, object]:
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}
