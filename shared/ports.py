"""The ports the use cases talk to; each has a real adapter chosen once at start-up, and a fake for tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Generic, Protocol, TypeVar

from shared.domain.access import AuditEntry, TokenRecord
from shared.domain.builds import BuildRecord, RunStatus
from shared.domain.context import ContextManifest
from shared.domain.context import ContextSource as ContextSource  # a port, defined in the domain
from shared.domain.datastore import UploadedBlob
from shared.domain.images import ImageRef
from shared.domain.inbox import BuildWaiter, InboxEntry
from shared.domain.plans import BuildPlan
from shared.domain.records import Container, EnvironmentRecord, JobRecord
from shared.domain.scans import Deployment, Finding, FindingStatus, Scan


class Probe(Protocol):
    """Every adapter answers whether its backend is reachable (for /api/health)."""

    def check(self) -> None:
        """Return when the backend answers; raise (any exception) with the reason when it does not."""


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the opaque cursor to the next (None on the last page)."""

    items: list[T]
    next_cursor: str | None


class EnvironmentStore(Probe, Protocol):
    """Environment versions and jobs, partitioned by workspace."""

    def insert(self, record: EnvironmentRecord) -> bool:
        """Create the version unless (workspace, name, version) exists; True when created. An all-digit
        version also raises the name's integer counter, so a later `insert_next` goes past it."""

    def insert_next(self, record: EnvironmentRecord) -> EnvironmentRecord:
        """Store `record` under the next free integer version of its name (its own `version` is ignored)
        and return it with that version. Concurrent calls get distinct versions: 50 at once get 1..50."""

    def get(self, workspace: str, name: str, version: str) -> EnvironmentRecord | None:
        """One version."""

    def latest(self, workspace: str, name: str) -> EnvironmentRecord | None:
        """The most recently created version that is not archived."""

    def list_latest(self, workspace: str, *, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        """The latest version of each listed name (no anonymous, no archived), ordered by name."""

    def history(self, workspace: str, name: str, *, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        """Versions of a name, archived ones included, newest first."""

    def set_archived(self, workspace: str, name: str, version: str, archived: bool) -> EnvironmentRecord | None:
        """Archive or restore a version; None when it does not exist."""

    def update_version(self, record: EnvironmentRecord) -> EnvironmentRecord | None:
        """Give the stored version of `record`'s workspace, name and version `record`'s description, tags,
        properties and archived flag (nothing else changes) and return it; None when it does not exist."""

    def container(self, workspace: str, name: str) -> Container | None:
        """A name's container: its newest version, next integer version and whether all are archived; None when
        the name has no version."""

    def containers(self, workspace: str, *, archived: bool | None, top: int,
                   cursor: str | None) -> Page[Container]:
        """The containers of the names with a version that is not anonymous, ordered by name: every one
        (`archived` None), those with a live version (False), or those whose versions are all archived (True)."""

    def insert_job(self, job: JobRecord) -> bool:
        """Record a submitted job unless its id is taken; True when recorded."""

    def get_job(self, workspace: str, job_id: str) -> JobRecord | None:
        """One job."""

    def update_job(self, workspace: str, job_id: str,
                   change: Callable[[JobRecord], JobRecord]) -> JobRecord | None:
        """Apply `change` to a recorded job as one step (a concurrent writer's change is never lost: the change is
        applied again to what that writer stored); the job as stored, or None when there is no such job."""

    def has_hash(self, workspace: str, hash_hex: str) -> bool:
        """Whether any version in the workspace (anonymous and archived included) has this hash."""
        ...

    def each_version(self) -> Iterator[EnvironmentRecord]:
        """Every version of every workspace, archived and anonymous included: the patch scan's input (not a
        request path, so a cross-partition query is fine here)."""


class CuratedCatalog(Protocol):
    """The curated environments: provided by the service, read-only, one version each."""

    def get(self, name: str) -> EnvironmentRecord | None:
        """A curated environment by name, any case."""

    def all(self) -> list[EnvironmentRecord]:
        """Every curated environment, by name."""


class ContextStore(Probe, Protocol):
    """Content-addressed file blobs and context manifests."""

    def write_blob(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store bytes, return (sha256 hex, size); written whole or not at all."""

    def open_blob(self, sha256: str) -> BinaryIO:
        """Read a stored blob."""

    def has_blob(self, sha256: str) -> bool:
        """Whether a blob is stored."""

    def delete_blob(self, sha256: str, *, unless_written_after: datetime | None = None) -> bool:
        """Remove a blob, and say whether it was; a missing one (or a malformed name) is no error. With
        `unless_written_after`, keep it when it was written (or touched) after that time: the garbage collector's
        check and delete are one."""

    def touch_blob(self, sha256: str) -> bool:
        """Mark an existing blob as just written, so an upload reusing it is safe from the garbage collector;
        False when there is no such blob."""

    def blobs(self) -> Iterator[tuple[str, datetime]]:
        """Every stored blob: its sha256 and when it was last written (UTC)."""

    def save_manifest(self, manifest: ContextManifest) -> str:
        """Store a manifest after its blobs; return its digest."""

    def load_manifest(self, digest: str) -> ContextManifest | None:
        """A stored manifest by digest."""

    def manifests(self) -> Iterator[str]:
        """The digest of every stored manifest (the garbage collector's roots)."""


class UploadArea(Probe, Protocol):
    """Where Azure ML's SDK uploads build contexts: a Blob Storage account, one container per workspace."""

    available: bool  # False where build contexts are files on this machine: there is no account to upload to
    account: str
    endpoint: str

    def ensure_container(self, container: str) -> None:
        """Create the container unless it exists."""

    def sas(self, container: str, *, lifetime: timedelta) -> str:
        """A SAS for the container: create, write and read blobs (no listing, no deleting), for `lifetime`."""

    def folder(self, container: str, prefix: str, *, limit: int) -> list[UploadedBlob]:
        """The blobs under `prefix` with their metadata, at most `limit` of them."""

    def open(self, container: str, name: str) -> BinaryIO:
        """Read one blob (FileNotFoundError when it is gone)."""


class ReplySender(Probe, Protocol):
    """Where replies to queue messages go: a queue of the sender's."""

    def send(self, reply_to: str, body: dict[str, Any]) -> None:
        """Deliver one reply; raise Unavailable (or the backend's error) when it cannot be taken now."""


class Registry(Probe, Protocol):
    """A container registry, read through the OCI distribution API."""

    def head(self, ref: ImageRef) -> str | None:
        """The manifest digest `ref` names, or None when the registry answers 404 (a cache miss).
        Anything else that is not an answer (401, 403, 5xx, timeouts, refused connections) raises
        RegistryUnavailable after retries: an outage is never a miss."""

    def tags(self, registry: str, repository: str) -> list[str]:
        """Every tag of a repository, following `Link` pagination; RegistryUnavailable as for head."""

    def created(self, ref: ImageRef) -> datetime | None:
        """When the image `ref` names was made: its config's `created` (RFC 3339, returned in UTC). For an index
        (manifest list) the linux/amd64 image's, else the first image's. None when the registry answers 404 for
        the manifest or the config, or the config has no `created`; RegistryUnavailable as for head."""


class BuildStore(Probe, Protocol):
    """Build records, their logs, and the one-active-build-per-hash rule (across all workspaces).

    Records carry a `revision`; `update` is optimistic: it stores the record only when the stored
    revision still equals `record.revision`, so two handlers of one build can never both move it on."""

    def start_or_join(self, record: BuildRecord) -> tuple[BuildRecord, bool]:
        """Create `record` unless a build of its hash is unfinished; then return that one (False).
        Enforced by the store itself (a unique row, a conditional create or an etag), never by
        query-then-write."""

    def get(self, build_id: str) -> BuildRecord | None:
        """One build."""

    def latest_for_hash(self, hash_hex: str) -> BuildRecord | None:
        """The newest build of a hash."""

    def count_for_hash(self, hash_hex: str) -> int:
        """How many builds a hash has had."""

    def update(self, record: BuildRecord) -> BuildRecord:
        """Save a changed record and return it with `revision` + 1; a finished one frees its hash for a
        new build. Raises StaleRecord when the stored revision is not `record.revision`. A cancel
        request made meanwhile is never lost: `cancel_requested` stays true once set."""

    def request_cancel(self, build_id: str) -> BuildRecord | None:
        """Flag an unfinished build for cancellation (whatever its revision); None when unknown."""

    def unfinished(self, *, idle_since: datetime) -> list[BuildRecord]:
        """Unfinished builds whose `updated_at` is older than `idle_since`: the recovery sweep's input
        (not a request path, so a cross-partition query is fine here)."""

    def append_log(self, build_id: str, lines: list[str]) -> None:
        """Add lines to a build's log."""

    def read_log(self, build_id: str, offset: int) -> list[str]:
        """Lines from `offset` on (line numbers start at 0)."""


@dataclass(frozen=True)
class QueueMessage:
    """A received message; its receipt proves the receiver still holds it."""

    id: str
    receipt: str
    body: str
    dequeue_count: int


class QueueSender(Probe, Protocol):
    """The only side of a queue the use cases see: they send, something else consumes."""

    def send(self, body: str, *, delay: float = 0.0) -> None:
        """Enqueue a message, invisible for `delay` seconds (a scheduled check)."""


class QueueConsumer(Protocol):
    """The receiving side, used by the local consumer (in Azure the queue triggers consume)."""

    def receive(self, visibility_timeout: float) -> QueueMessage | None:
        """The next visible message, hidden from others for `visibility_timeout` seconds."""

    def delete(self, message: QueueMessage) -> None:
        """Done with it."""

    def hide(self, message: QueueMessage, seconds: float) -> QueueMessage:
        """Keep it hidden for `seconds` more (a heartbeat, or a backoff before a retry); the message
        returned carries the receipt to use from now on (Azure Storage issues a new one)."""

    def poison(self, message: QueueMessage, reason: str) -> None:
        """Move it aside for good (`<queue>-poison`), with the reason."""


class Builder(Probe, Protocol):
    """Runs builds that outlive any one call: start a run, then poll it until it ends."""

    name: str

    def start(self, *, build_id: str, plan: BuildPlan, context: ContextSource, targets: list[ImageRef],
              platform: str, timeout: float, agent_pool: str | None) -> str:
        """Start building `plan` from `context` (the Dockerfile and every file, generated ones included)
        and pushing to every target; return the run id. Raises BuilderUnavailable (worth a retry) or
        BuildFailed (the plan's fault, final)."""

    def poll(self, run_id: str, log_offset: int) -> RunStatus:
        """The run's state, and its log from `log_offset` (the builder's own unit) on. A run this builder
        no longer knows (its process died) is LOST. Raises BuilderUnavailable when it cannot tell."""

    def cancel(self, run_id: str) -> None:
        """Ask the run to stop; `poll` reports CANCELLED once it has."""


class DeploymentStore(Probe, Protocol):
    """Deployments by workspace and name."""

    def put(self, deployment: Deployment) -> Deployment:
        """Create or replace a deployment (its `created_at` kept from the stored one when replacing)."""

    def get(self, workspace: str, name: str) -> Deployment | None:
        """One deployment."""

    def list_deployments(self, workspace: str, *, top: int, cursor: str | None,
                         needs_redeploy: bool | None = None) -> Page[Deployment]:
        """A workspace's deployments by name, optionally only those flagged (or not) for redeploy."""

    def delete(self, workspace: str, name: str) -> bool:
        """Remove it; False when there was none."""

    def each(self) -> Iterator[Deployment]:
        """Every deployment of every workspace (the scan's input; a cross-partition query is fine)."""


class ScanStore(Probe, Protocol):
    """Scans, their findings, and the digests of immutable tags (which never move, so are asked once)."""

    def create_scan(self, scan: Scan) -> None:
        """Store a new scan."""

    def get_scan(self, scan_id: str) -> Scan | None:
        """One scan."""

    def list_scans(self, *, top: int, cursor: str | None) -> Page[Scan]:
        """Scans, newest first."""

    def update_scan(self, scan: Scan) -> Scan:
        """Optimistic like BuildStore.update: stored only if the stored revision is `scan.revision`, returned
        with revision + 1; StaleRecord otherwise."""

    def get_finding(self, workspace: str, finding_id: str) -> Finding | None:
        """One finding."""

    def put_finding(self, finding: Finding) -> Finding:
        """Optimistic create-or-update: a new id is created (revision 0 must not exist yet), an existing one is
        replaced only if its stored revision is `finding.revision`; StaleRecord otherwise. Returned with
        revision + 1."""

    def list_findings(self, workspace: str, *, top: int, cursor: str | None,
                      statuses: frozenset[FindingStatus] | None = None) -> Page[Finding]:
        """A workspace's findings (optionally of some statuses), by environment then type."""

    def findings_of(self, workspace: str, name: str, version: str) -> list[Finding]:
        """Every finding of one environment version (single-partition)."""

    def known_digests(self, repository: str) -> dict[str, str]:
        """tag -> digest remembered for a registry/repository."""

    def remember_digests(self, repository: str, digests: dict[str, str]) -> None:
        """Remember the digests of immutable tags of a registry/repository."""


class Notifier(Probe, Protocol):
    """Where scan reports go (a webhook), besides the scan records."""

    def notify(self, report: dict[str, Any]) -> None:
        """Deliver a report; raises (after retries) when it could not be delivered."""


class TokenStore(Probe, Protocol):
    """Bearer tokens, by the hash of their secret; revoked ones stay listed."""

    def add(self, token: TokenRecord) -> None:
        ...

    def get(self, token_id: str) -> TokenRecord | None:
        ...

    def list_tokens(self, workspace: str | None) -> list[TokenRecord]:
        """Tokens of one workspace (None: every token), oldest first."""
        ...

    def revoke(self, token_id: str, at: datetime) -> TokenRecord | None:
        """Mark a token revoked (once; a second revoke keeps the first time); None when there is none."""
        ...


class AuditLog(Probe, Protocol):
    """Every change made through envhub, appended, newest first when read."""

    def append(self, entry: AuditEntry) -> None:
        ...

    def entries(self, workspace: str, *, top: int, cursor: str | None) -> Page[AuditEntry]:
        ...


class InboxStore(Probe, Protocol):
    """What envhub remembers of the messages it took: one entry per (workspace, correlation id), and the replies
    owed when builds end."""

    def claim(self, entry: InboxEntry) -> InboxEntry:
        """Store `entry` unless its (workspace, correlation_id) has one; return the stored entry (this one, or the
        one stored before, unchanged). Atomic: of concurrent claims, one wins and all get the winner's."""

    def finish(self, workspace: str, correlation_id: str, reply: dict[str, Any],
               build_id: str | None = None) -> InboxEntry | None:
        """Record the reply of a claimed entry unless it has one already (the first reply stays); return the
        stored entry, or None when nothing was claimed under that key."""

    def get_entry(self, workspace: str, correlation_id: str) -> InboxEntry | None:
        """One entry."""

    def wait_for(self, waiter: BuildWaiter) -> None:
        """Remember a reply owed when `waiter.build_id` ends (the same waiter twice is stored once)."""

    def take_waiters(self, build_id: str) -> list[BuildWaiter]:
        """Remove and return the waiters of a build: each is returned to exactly one caller, however many take
        at once."""

    def pending_waiters(self, top: int) -> list[BuildWaiter]:
        """Up to `top` waiters of any build (the recovery sweep's view, oldest first where the store knows)."""

    def take_waiter(self, build_id: str, workspace: str, correlation_id: str) -> BuildWaiter | None:
        """Remove and return one waiter, or None when another caller took it (or none was stored)."""
