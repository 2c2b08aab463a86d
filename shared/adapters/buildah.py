"""The local builder: buildah with chroot isolation and vfs storage under the data folder, pushing to a registry."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from shared.adapters.children import die_with_parent
from shared.domain.builds import BuiltImage
from shared.domain.errors import BuildCancelled, BuilderUnavailable, BuildFailed
from shared.domain.images import ImageRef

log = logging.getLogger(__name__)
BUSYBOX = Path("/bin/busybox")  # from busybox-static: runs in an empty image
# Lists what the image has, without failing when it has no Python or conda.
# Lines that mean a registry could not be reached: a fault of the moment, worth a retry, not the definition's.
_UNREACHABLE = re.compile(r"connection refused|no such host|i/o timeout|TLS handshake timeout|"
                          r"connection reset|503 Service Unavailable|502 Bad Gateway|too many requests", re.I)
_PACKAGES_SCRIPT = (
    "if command -v conda >/dev/null 2>&1; then conda list --export 2>/dev/null; fi; "
    "for py in python3 python; do if command -v $py >/dev/null 2>&1; "
    "then $py -m pip freeze --all 2>/dev/null; break; fi; done"
)


class BuildahBuilder:
    """Runs `buildah bud`/`push` as subprocesses; one instance per data folder."""

    name = "buildah"

    def __init__(self, root: Path, *, insecure_registries: frozenset[str] = frozenset(),
                 unqualified_registry: str | None = None) -> None:
        self.root = root
        self.insecure = insecure_registries
        root.mkdir(parents=True, exist_ok=True)
        self.registries_conf = root / "registries.conf"
        self._write_registries_conf(unqualified_registry)

    @staticmethod
    def available() -> bool:
        """Whether buildah is installed."""
        return shutil.which("buildah") is not None

    def _write_registries_conf(self, unqualified: str | None) -> None:
        # Short names (FROM envhub/busybox) resolve to the local registry, never to a public one.
        lines = [f'unqualified-search-registries = ["{unqualified}"]' if unqualified else
                 "unqualified-search-registries = []", 'short-name-mode = "permissive"']
        for host in sorted(self.insecure):
            lines += ["", "[[registry]]", f'location = "{host}"', "insecure = true"]
        self.registries_conf.write_text("\n".join(lines) + "\n")

    def _command(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "vfs", *args]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs",
                "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}

    def _tls(self, ref: ImageRef) -> str:
        return f"--tls-verify={'false' if ref.registry in self.insecure else 'true'}"

    def build(self, *, context: Path, dockerfile: str, targets: list[ImageRef], log: Callable[[str], None],
              timeout: float, cancelled: Callable[[], bool]) -> BuiltImage:
        local = f"localhost/envhub-build/{targets[0].repository.replace('/', '-')}:{int(time.time() * 1000)}"
        started = time.monotonic()
        tail: list[str] = []

        def keep(line: str) -> None:
            tail[:] = [*tail[-49:], line]
            log(line)

        code = self._stream(
            # --pull-always: the base digests recorded before the build are the ones it uses
            self._command("bud", "--isolation", "chroot", "--pull-always", "-f", str(context / dockerfile),
                          "-t", local, str(context)),
            keep, timeout, cancelled,
        )
        if code < 0:
            raise BuilderUnavailable(f"buildah was killed by signal {-code}", where="buildah")
        if code != 0:
            if any(_UNREACHABLE.search(line) for line in tail):
                raise BuilderUnavailable(f"a registry could not be reached while building: {_last_error(tail)}",
                                         where=dockerfile)
            raise BuildFailed(f"{_last_error(tail)} (buildah bud exited with {code})", where=dockerfile)
        try:
            packages = self._packages(local, log)
            digest = ""
            for target in targets:
                digest_file = self.root / "run" / f"digest-{os.getpid()}-{threading.get_ident()}"
                remaining = max(1.0, timeout - (time.monotonic() - started))
                code = self._stream(self._command("push", self._tls(target), "--digestfile", str(digest_file),
                                                  local, f"docker://{target}"), log, remaining, cancelled)
                if code != 0:
                    raise BuilderUnavailable(f"pushing to {target.registry} failed (exit {code})", where=str(target))
                digest = digest_file.read_text().strip()
                digest_file.unlink(missing_ok=True)
            return BuiltImage(digest=digest, packages=packages)
        finally:
            subprocess.run(self._command("rmi", "-f", local), capture_output=True, env=self._env(), check=False)

    def _packages(self, image: str, log: Callable[[str], None]) -> list[str]:
        made = subprocess.run(self._command("from", "--pull=never", image), capture_output=True, text=True,
                              env=self._env(), check=False)
        if made.returncode != 0:
            return []
        container = made.stdout.strip().splitlines()[-1]
        try:
            listed = subprocess.run(
                self._command("run", "--isolation", "chroot", container, "--", "/bin/sh", "-c", _PACKAGES_SCRIPT),
                capture_output=True, text=True, env=self._env(), timeout=300, check=False,
            )
            packages = [line.strip() for line in listed.stdout.splitlines() if line.strip()
                        and not line.startswith("#")]
            log(f"envhub: {len(packages)} installed packages recorded")
            return packages
        except subprocess.TimeoutExpired:
            return []
        finally:
            subprocess.run(self._command("rm", container), capture_output=True, env=self._env(), check=False)

    def _stream(self, command: list[str], log: Callable[[str], None], timeout: float,
                cancelled: Callable[[], bool]) -> int:
        """Run a command, sending each output line to `log`; kill it on timeout or cancellation."""
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=self._env(), start_new_session=True, errors="replace",
                                   preexec_fn=die_with_parent)
        assert process.stdout is not None
        reader = threading.Thread(target=_pump, args=(process.stdout, log), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None:
                if cancelled():
                    _kill(process)
                    raise BuildCancelled("the build was cancelled")
                if time.monotonic() > deadline:
                    _kill(process)
                    raise BuildFailed(f"the build took longer than {timeout:.0f} s and was stopped", where="timeout")
                time.sleep(0.2)
        finally:
            reader.join(timeout=5)
        return process.returncode

    def seed_busybox(self, target: ImageRef) -> str:
        """Make `target` from the host's static busybox (no network needed) and push it."""
        if not BUSYBOX.is_file():
            raise BuilderUnavailable("/bin/busybox is missing; install busybox-static", where=str(BUSYBOX))
        run = self._run_checked
        container = run("from", "scratch").strip().splitlines()[-1]
        try:
            run("copy", container, str(BUSYBOX), "/bin/busybox")
            run("run", "--isolation", "chroot", container, "--", "/bin/busybox", "--install", "-s", "/bin")
            run("config", "--cmd", "/bin/sh", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", container)
            local = "localhost/envhub/busybox:latest"
            run("commit", container, local)
            digest_file = self.root / "run" / "seed-digest"
            run("push", self._tls(target), "--digestfile", str(digest_file), local, f"docker://{target}")
            return digest_file.read_text().strip()
        finally:
            # A local localhost/... image would shadow the registry's when a Dockerfile names it short.
            subprocess.run(self._command("rm", container), capture_output=True, env=self._env(), check=False)
            subprocess.run(self._command("rmi", "-f", "localhost/envhub/busybox:latest"), capture_output=True,
                           env=self._env(), check=False)

    def _run_checked(self, *args: str) -> str:
        done = subprocess.run(self._command(*args), capture_output=True, text=True, env=self._env(), check=False)
        if done.returncode != 0:
            raise BuilderUnavailable(f"buildah {args[0]} failed: {done.stderr.strip()[-500:]}", where="buildah")
        return done.stdout


def _last_error(lines: list[str]) -> str:
    """The line that says what went wrong, as buildah prints it last."""
    for line in reversed(lines):
        if line.lower().startswith(("error", "time=")) or "error" in line.lower():
            return line.strip()[:500]
    return lines[-1].strip()[:500] if lines else "no output"


def _pump(stream: IO[str], log: Callable[[str], None]) -> None:
    for line in stream:
        log(line.rstrip("\n"))


def _kill(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
