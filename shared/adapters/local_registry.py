"""The Distribution registry (Debian's docker-registry) as a child process, storage under the data folder."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from shared.adapters.children import die_with_parent
from shared.domain.errors import RegistryUnavailable

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
    """Starts `docker-registry serve` on 127.0.0.1:<port>, or reuses one already answering there."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """host:port, as image references name it."""
        return f"127.0.0.1:{self.port}"

    def _answering(self) -> bool:
        try:
            return httpx.get(f"http://{self.host}/v2/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def start(self, wait: float = 20.0) -> None:
        """Start the registry (unless one answers already) and wait until it does."""
        if self._answering():
            return
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryUnavailable("docker-registry is not installed (Debian package docker-registry); "
                                      "`make run` installs it", where="docker-registry")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.yml"
        config.write_text(_CONFIG.format(root=self.folder / "storage", port=self.port))
        log = (self.folder / "registry.log").open("ab")
        self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + wait
        while not self._answering():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RegistryUnavailable(
                    f"the local registry did not start on {self.host}; see {self.folder / 'registry.log'}",
                    where=self.host,
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the registry this object started."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
