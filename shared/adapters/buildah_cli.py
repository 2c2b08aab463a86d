"""The buildah command line as envhub runs it: vfs storage and registries.conf under one folder, chroot isolation,
and registries limited to the allowlist (BUILD_REGISTRY_SOURCES before any connection, a signature policy after)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shared.domain.errors import BuilderUnavailable
from shared.domain.images import ImageRef
from shared.domain.outbound import Allowlist

PULLING = frozenset({"bud", "build", "build-using-dockerfile", "from", "pull", "push"})  # take --signature-policy
NOWHERE = "envhub.invalid"  # an empty allowedRegistries would allow every registry: this one allows none


class Buildah:
    """Argument lists and environment for buildah over one storage folder; every call is an argument list,
    never a shell string."""

    def __init__(self, root: Path, *, insecure_registries: frozenset[str] = frozenset(),
                 unqualified_registry: str | None = None, allowed: Allowlist | None = None) -> None:
        self.root = root
        self.insecure = insecure_registries
        self.allowed = allowed  # None: any registry (a local seed, the benchmark); the builder passes the setting's
        root.mkdir(parents=True, exist_ok=True)
        self.registries_conf = root / "registries.conf"
        self._write_registries_conf(unqualified_registry)
        self.policy = root / "policy.json"
        if allowed is not None:
            self.policy.write_text(json.dumps(signature_policy(allowed), indent=2) + "\n")

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
        """`buildah <args>` over this storage; commands that pull or push get the signature policy."""
        policy = ["--signature-policy", str(self.policy)] if self.allowed is not None and args[:1] and \
            args[0] in PULLING else []
        return ["buildah", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "vfs", *args[:1], *policy, *args[1:]]

    def env(self, registries: Iterable[str] = ()) -> dict[str, str]:
        """The environment every buildah call runs with. With an allowlist, buildah refuses any registry but its
        exact entries and `registries` (the checked hosts a build names under a `*.suffix` entry) before it
        connects: the signature policy alone is consulted only after a registry was asked for the image."""
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs",
               "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}
        env.pop("BUILD_REGISTRY_SOURCES", None)  # never one inherited from the environment
        if self.allowed is not None and not self.allowed.anywhere:
            hosts = sorted(self.allowed.exact | {r.lower() for r in registries}) or [NOWHERE]
            env["BUILD_REGISTRY_SOURCES"] = json.dumps({"allowedRegistries": hosts})
        return env

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


def signature_policy(allowed: Allowlist) -> dict[str, Any]:
    """A containers policy.json: images from listed registries (wildcards too) and this machine's own storage
    (a build's result, pushed from there) are accepted, everything else rejected."""
    accept = [{"type": "insecureAcceptAnything"}]
    if allowed.anywhere:
        return {"default": accept}
    local = {"": accept}
    return {"default": [{"type": "reject"}],
            "transports": {"docker": {host: accept for host in sorted(allowed.entries | allowed.home)},
                           "containers-storage": local, "oci": local, "dir": local}}
