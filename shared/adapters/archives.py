"""Build contexts as gzip'd tar streams: what a remote builder uploads, made from any readable context."""

from __future__ import annotations

import tarfile
from typing import BinaryIO

from shared.ports import ContextSource


def write_tar_gz(source: ContextSource, sink: BinaryIO) -> None:
    """Write `source` as a tar.gz into `sink`: folders and regular files only, owners and times zeroed, so
    that the same context always gives the same bytes."""
    manifest = source.manifest
    with tarfile.open(fileobj=sink, mode="w:gz") as archive:
        for rel in manifest.dirs:
            info = tarfile.TarInfo(rel)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for entry in manifest.files:
            info = tarfile.TarInfo(entry.path)
            info.size, info.mode = entry.size, 0o755 if entry.executable else 0o644
            with source.open(entry.path) as handle:
                archive.addfile(info, handle)
