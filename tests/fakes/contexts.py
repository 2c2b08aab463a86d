"""An in-memory ContextStore: content-addressed blobs and manifests in dictionaries."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from shared.adapters.file_contexts import is_sha256, manifest_hex
from shared.domain.context import ContextManifest


class FakeContextStore:
    """Keeps what the real stores keep, under the same names. Set `down` to make every call fail as an
    unreachable backend would."""

    def __init__(self) -> None:
        self.down = False
        self.blob_data: dict[str, bytes] = {}  # sha -> bytes
        self.manifest_json: dict[str, str] = {}  # hex -> JSON, as stored
        self.written: dict[str, datetime] = {}  # sha -> when written; tests may move it back
        self._lock = threading.Lock()

    def _answer(self) -> None:
        if self.down:
            raise ConnectionError("the context store does not answer")

    def check(self) -> None:
        self._answer()

    def write_blob(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        self._answer()
        data = b"".join(chunks)  # the whole stream first: a failing one stores nothing
        sha = hashlib.sha256(data).hexdigest()
        with self._lock:
            if sha not in self.blob_data:
                self.blob_data[sha] = data
                self.written[sha] = datetime.now(UTC)
        return sha, len(data)

    def open_blob(self, sha256: str) -> BinaryIO:
        self._answer()
        with self._lock:
            data = self.blob_data.get(sha256)
        if data is None:
            raise FileNotFoundError(f"no blob {sha256!r}")
        return io.BytesIO(data)

    def has_blob(self, sha256: str) -> bool:
        self._answer()
        return is_sha256(sha256) and sha256 in self.blob_data

    def delete_blob(self, sha256: str, *, unless_written_after: datetime | None = None) -> bool:
        self._answer()
        with self._lock:
            written = self.written.get(sha256)
            if written is None or (unless_written_after is not None and written > unless_written_after):
                return False
            self.blob_data.pop(sha256, None)
            self.written.pop(sha256, None)
            return True

    def touch_blob(self, sha256: str) -> bool:
        self._answer()
        with self._lock:
            if sha256 not in self.blob_data:
                return False
            self.written[sha256] = datetime.now(UTC)
            return True

    def blobs(self) -> Iterator[tuple[str, datetime]]:
        self._answer()
        with self._lock:
            return iter(sorted(self.written.items()))

    def manifests(self) -> Iterator[str]:
        self._answer()
        with self._lock:
            return iter([f"sha256:{h}" for h in sorted(self.manifest_json)])

    def save_manifest(self, manifest: ContextManifest) -> str:
        self._answer()
        digest = manifest.digest
        with self._lock:
            self.manifest_json.setdefault(digest.removeprefix("sha256:"), manifest.model_dump_json())
        return digest

    def load_manifest(self, digest: str) -> ContextManifest | None:
        self._answer()
        hex_part = manifest_hex(digest)
        stored = None if hex_part is None else self.manifest_json.get(hex_part)
        return None if stored is None else ContextManifest.model_validate_json(stored)

    def stored(self) -> list[str]:
        """Every stored name, as the Blob Storage adapter names them."""
        with self._lock:
            return sorted([f"blobs/{sha}" for sha in self.blob_data]
                          + [f"manifests/{h}.json" for h in self.manifest_json])
