"""Build contexts on the local disk: content-addressed blobs and manifests under the data folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from shared.domain.context import ContextManifest

_HEX = frozenset("0123456789abcdef")


def is_sha256(value: str) -> bool:
    """Whether `value` is a sha256 in lowercase hex (what blob names are)."""
    return len(value) == 64 and _HEX.issuperset(value)


def manifest_hex(digest: str) -> str | None:
    """The hex part of a manifest digest (`sha256:<hex>`, or the bare hex); None when malformed."""
    hex_part = digest.removeprefix("sha256:")
    return hex_part if is_sha256(hex_part) else None


class FileContextStore:
    """Blobs at blobs/ab/<sha256>, manifests at manifests/<hex>.json; each written to a temporary
    file and renamed into place, so a crash leaves nothing half-written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "manifests").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def _blob_path(self, sha256: str) -> Path:
        if not is_sha256(sha256):  # never a path of the caller's making
            raise FileNotFoundError(f"no blob {sha256!r}")
        return self.root / "blobs" / sha256[:2] / sha256

    def check(self) -> None:
        # A real write: a vanished or read-only folder fails here rather than at the next upload.
        with tempfile.TemporaryFile(dir=self.root / "tmp"):
            pass

    def write_blob(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
            sha = digest.hexdigest()
            target = self._blob_path(sha)
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
            return sha, size
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open_blob(self, sha256: str) -> BinaryIO:
        return self._blob_path(sha256).open("rb")

    def has_blob(self, sha256: str) -> bool:
        return is_sha256(sha256) and self._blob_path(sha256).is_file()

    def delete_blob(self, sha256: str, *, unless_written_after: datetime | None = None) -> bool:
        if not is_sha256(sha256):
            return False
        path = self._blob_path(sha256)
        try:
            # Checked just before the unlink: an upload touching it in between is a window of microseconds.
            if unless_written_after is not None and \
                    datetime.fromtimestamp(path.stat().st_mtime, UTC) > unless_written_after:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def touch_blob(self, sha256: str) -> bool:
        if not is_sha256(sha256):
            return False
        try:
            os.utime(self._blob_path(sha256))
        except FileNotFoundError:
            return False
        return True

    def blobs(self) -> Iterator[tuple[str, datetime]]:
        for folder in sorted((self.root / "blobs").iterdir()):
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if not is_sha256(path.name):
                    continue
                try:
                    modified = path.stat().st_mtime
                except FileNotFoundError:
                    continue  # deleted meanwhile
                yield path.name, datetime.fromtimestamp(modified, UTC)

    def manifests(self) -> Iterator[str]:
        for path in sorted((self.root / "manifests").glob("*.json")):
            if is_sha256(path.stem):
                yield f"sha256:{path.stem}"

    def save_manifest(self, manifest: ContextManifest) -> str:
        digest = manifest.digest
        target = self.root / "manifests" / f"{digest.removeprefix('sha256:')}.json"
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(manifest.model_dump_json())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return digest

    def load_manifest(self, digest: str) -> ContextManifest | None:
        hex_part = manifest_hex(digest)
        if hex_part is None:
            return None
        target = self.root / "manifests" / f"{hex_part}.json"
        if not target.is_file():
            return None
        return ContextManifest.model_validate_json(target.read_text())
