"""A base image made on this machine with no network: the host's static busybox in an empty image, pushed to the
local registry, so that a first build works offline."""

from __future__ import annotations

from pathlib import Path

from shared.adapters.buildah_cli import Buildah
from shared.domain.errors import BuilderUnavailable
from shared.domain.images import ImageRef

BUSYBOX = Path("/bin/busybox")  # from busybox-static: runs in an empty image
SEED_REPOSITORY = "envhub/busybox"
_LOCAL = "localhost/envhub/busybox:latest"


def seed_busybox(buildah: Buildah, target: ImageRef) -> str:
    """Make `target` from the host's static busybox and push it; return its digest."""
    if not BUSYBOX.is_file():
        raise BuilderUnavailable("/bin/busybox is missing; install busybox-static", where=str(BUSYBOX))
    run = buildah.run_checked
    container = run("from", "scratch").strip().splitlines()[-1]
    try:
        run("copy", container, str(BUSYBOX), "/bin/busybox")
        run("run", "--isolation", "chroot", container, "--", "/bin/busybox", "--install", "-s", "/bin")
        run("config", "--cmd", "/bin/sh", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", container)
        run("commit", container, _LOCAL)
        digest_file = buildah.root / "run" / "seed-digest"
        run("push", buildah.tls(target), "--digestfile", str(digest_file), _LOCAL, f"docker://{target}")
        return digest_file.read_text().strip()
    finally:
        # A local localhost/... image would shadow the registry's when a Dockerfile names it short.
        buildah.run("rm", container)
        buildah.run("rmi", "-f", _LOCAL)
