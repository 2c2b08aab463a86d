"""The buildah command line as envhub runs it: vfs storage and registries.conf under one folder, chroot isolation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from shared.domain.errors import BuilderUnavailable
from shared.domain.images import ImageRef


class Buildah:
    """Argument lists and environment for buildah over one storage folder; every call is an argument list,
    never a shell string."""

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

    def check(self) -> None:
        """buildah runs."""
        binary = shutil.which("buildah")
        if binary is None:
            raise BuilderUnavailable("buildah is not installed (`make run` installs it)", where="buildah")
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
        if done.returncode != 0:
            raise BuilderUnavailable(f"buildah --version failed: {done.stderr.strip()}", where="buildah")

    def _write_registries_conf(self, unqualified: str | None) -> None:
        # Short names (FROM envhub/busybox) resolve to the local registry, never to a public one.
        lines = [f'unqualified-search-registries = ["{unqualified}"]' if unqualified else
                 "unqualified-search-registries = []", 'short-name-mode = "permissive"']
        for host in sorted(self.insecure):
            lines += ["", "[[registry]]", f'location = "{host}"', "insecure = true"]
        self.registries_conf.write_text("\n".join(lines) + "\n")

    def command(self, *args: str) -> list[str]:
        """`buildah <args>` over this storage."""
        return ["buildah", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "vfs", *args]

    def env(self) -> dict[str, str]:
        """The environment every buildah call runs with."""
        return {**os.environ, "BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs",
                "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}

    def tls(self, ref: ImageRef) -> str:
        """The --tls-verify flag for a registry."""
        return f"--tls-verify={'false' if ref.registry in self.insecure else 'true'}"

    def run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run and capture; the caller judges the exit code."""
        return subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env(), timeout=timeout,
                              check=False)

    def run_checked(self, *args: str) -> str:
        """Run; a failure is BuilderUnavailable with buildah's own message."""
        done = self.run(*args)
        if done.returncode != 0:
            raise BuilderUnavailable(f"buildah {args[0]} failed: {done.stderr.strip()[-500:]}", where="buildah")
        return done.stdout

    def containers(self) -> list[str]:
        """The ids of the working containers in this storage (a build killed midway leaves its own behind)."""
        if not (self.root / "storage").is_dir():
            return []
        listed = json.loads(self.run_checked("containers", "--all", "--json") or "[]")
        return [str(entry.get("id", "")) for entry in listed or [] if isinstance(entry, dict)]

    def remove_all_containers(self) -> None:
        """`buildah rm --all` over this storage (never any other)."""
        self.run_checked("rm", "--all")
