"""The ports the use cases talk to; each has a real adapter chosen once at start-up, and a fake for tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from shared.domain.builds import BuildRecord, BuiltImage
from shared.domain.context import ContextManifest
from shared.domain.images import ImageRef
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

    def insert_job(self, job: JobRecord) -> bool:
        """Record a submitted job unless its id is taken; True when recorded."""

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


class Registry(Protocol):
    """A container registry, read through the OCI distribution API."""

    def head(self, ref: ImageRef) -> str | None:
        """The manifest digest `ref` names, or None when the registry answers 404 (a cache miss).
        Anything else that is not an answer (401, 403, 5xx, timeouts, refused connections) raises
        RegistryUnavailable after retries: an outage is never a miss."""

    def tags(self, registry: str, repository: str) -> list[str]:
        """Every tag of a repository, following `Link` pagination; RegistryUnavailable as for head."""


class BuildStore(Protocol):
    """Build records, their logs, and the one-active-build-per-hash rule."""

    def start_or_join(self, record: BuildRecord) -> tuple[BuildRecord, bool]:
        """Create `record` unless a build of its hash is unfinished; then return that one (False)."""

    def get(self, build_id: str) -> BuildRecord | None:
        """One build."""

    def latest_for_hash(self, hash_hex: str) -> BuildRecord | None:
        """The newest build of a hash."""

    def count_for_hash(self, hash_hex: str) -> int:
        """How many builds a hash has had."""

    def update(self, record: BuildRecord) -> None:
        """Save a changed record; a finished one frees its hash for a new build."""

    def request_cancel(self, build_id: str) -> BuildRecord | None:
        """Flag a build for cancellation."""

    def append_log(self, build_id: str, lines: list[str]) -> None:
        """Add lines to a build's log."""

    def read_log(self, build_id: str, offset: int) -> list[str]:
        """Lines from `offset` on."""


@dataclass(frozen=True)
class QueueMessage:
    """A received message; its receipt proves the receiver still holds it."""

    id: str
    receipt: str
    body: str
    dequeue_count: int


class Queue(Protocol):
    """A durable queue with visibility timeouts, as Azure Storage queues behave."""

    def send(self, body: str) -> None:
        """Enqueue a message."""

    def receive(self, visibility_timeout: float) -> QueueMessage | None:
        """The next visible message, hidden from others for `visibility_timeout` seconds."""

    def delete(self, message: QueueMessage) -> None:
        """Done with it."""

    def hide(self, message: QueueMessage, seconds: float) -> None:
        """Keep it hidden for `seconds` more (a heartbeat, or a backoff before a retry)."""

    def poison(self, message: QueueMessage, reason: str) -> None:
        """Move it aside for good, with the reason."""


class Builder(Protocol):
    """Builds an image from a folder and pushes it."""

    name: str

    def build(self, *, context: Path, dockerfile: str, targets: list[ImageRef], log: Callable[[str], None],
              timeout: float, cancelled: Callable[[], bool]) -> BuiltImage:
        """Build, push to every target; the pushed digest and what `pip freeze` / `conda list` report
        inside the image. Raises BuildFailed (the definition's fault, final), BuildCancelled, or
        BuilderUnavailable (worth a retry)."""
