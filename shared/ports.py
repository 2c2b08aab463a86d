"""The ports the use cases talk to; each has a real adapter chosen once at start-up, and a fake for tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO, Protocol

from shared.domain.context import ContextManifest
from shared.domain.records import EnvironmentRecord, JobRecord


class EnvironmentStore(Protocol):
    """Environment versions and jobs, partitioned by workspace."""

    def insert(self, record: EnvironmentRecord) -> bool:
        """Create the version unless (workspace, name, version) exists; True when created."""

    def get(self, workspace: str, name: str, version: str) -> EnvironmentRecord | None:
        """One version."""

    def highest_integer_version(self, workspace: str, name: str) -> int:
        """The highest all-digit version of a name (archived ones included), 0 when there is none."""

    def latest(self, workspace: str, name: str) -> EnvironmentRecord | None:
        """The most recently created version that is not archived."""

    def list_latest(self, workspace: str, *, top: int, after: str | None) -> list[EnvironmentRecord]:
        """The latest version of each listed name (no anonymous, no archived), by name, after a name."""

    def history(
        self, workspace: str, name: str, *, top: int, before: int | None
    ) -> list[tuple[int, EnvironmentRecord]]:
        """Versions of a name, newest first, with a position to page from."""

    def set_archived(self, workspace: str, name: str, version: str, archived: bool) -> EnvironmentRecord | None:
        """Archive or restore a version; None when it does not exist."""

    def insert_job(self, job: JobRecord) -> None:
        """Record a submitted job."""

    def get_job(self, workspace: str, job_id: str) -> JobRecord | None:
        """One job."""


class ContextSource(Protocol):
    """A build context whose files can be read."""

    @property
    def manifest(self) -> ContextManifest:
        """Its manifest."""

    def open(self, rel: str) -> BinaryIO:
        """A member for reading."""

    def read_text(self, rel: str) -> str | None:
        """A member as text, or None when absent."""


class ContextStore(Protocol):
    """Content-addressed file blobs and context manifests."""

    def write_blob(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store bytes, return (sha256 hex, size); written whole or not at all."""

    def open_blob(self, sha256: str) -> BinaryIO:
        """Read a stored blob."""

    def has_blob(self, sha256: str) -> bool:
        """Whether a blob is stored."""

    def save_manifest(self, manifest: ContextManifest) -> str:
        """Store a manifest after its blobs; return its digest."""

    def load_manifest(self, digest: str) -> ContextManifest | None:
        """A stored manifest by digest."""
