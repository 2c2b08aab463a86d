"""In-memory EnvironmentStore and BuildStore with the ports' semantics; one lock each stands in for transactions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from shared.domain.builds import BuildRecord
from shared.domain.errors import NotFound, StaleRecord
from shared.domain.records import Container, EnvironmentRecord, JobRecord, with_mutable
from shared.ports import Page


class _Answering:
    """Set `down` to make every call fail as an unreachable backend would."""

    def __init__(self) -> None:
        self.down = False
        self._lock = threading.RLock()

    def _answer(self) -> None:
        if self.down:
            raise ConnectionError(f"{type(self).__name__} does not answer")

    def check(self) -> None:
        self._answer()


class FakeEnvironmentStore(_Answering):
    """Versions in creation order (the list index is the creation order); cursors are a name or an index."""

    def __init__(self) -> None:
        super().__init__()
        self._versions: list[EnvironmentRecord] = []
        self._jobs: dict[tuple[str, str], JobRecord] = {}

    def _of(self, workspace: str, name: str) -> list[EnvironmentRecord]:
        return [r for r in self._versions if r.workspace == workspace and r.name == name]

    def insert(self, record: EnvironmentRecord) -> bool:
        self._answer()
        with self._lock:
            if self.get(record.workspace, record.name, record.version) is not None:
                return False
            self._versions.append(record)
            return True

    def insert_next(self, record: EnvironmentRecord) -> EnvironmentRecord:
        self._answer()
        with self._lock:
            counter = max((int(r.version) for r in self._of(record.workspace, record.name)
                           if r.version.isascii() and r.version.isdigit()), default=0)
            stored = record.model_copy(update={"version": str(counter + 1)})
            self._versions.append(stored)
            return stored

    def get(self, workspace: str, name: str, version: str) -> EnvironmentRecord | None:
        self._answer()
        with self._lock:
            return next((r for r in self._of(workspace, name) if r.version == version), None)

    def latest(self, workspace: str, name: str) -> EnvironmentRecord | None:
        self._answer()
        with self._lock:
            return next((r for r in reversed(self._of(workspace, name)) if not r.archived), None)

    def list_latest(self, workspace: str, *, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        self._answer()
        with self._lock:
            names = sorted({r.name for r in self._versions if r.workspace == workspace and r.name > (cursor or "")})
            listed = [r for r in (self.latest(workspace, n) for n in names) if r is not None and not r.anonymous]
        return Page(listed[:top], listed[top - 1].name if len(listed) > top else None)

    def history(self, workspace: str, name: str, *, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        self._answer()
        start = int(cursor or 0)
        with self._lock:
            newest_first = list(reversed(self._of(workspace, name)))
        more = len(newest_first) > start + top
        return Page(newest_first[start:start + top], str(start + top) if more else None)

    def set_archived(self, workspace: str, name: str, version: str, archived: bool) -> EnvironmentRecord | None:
        self._answer()
        with self._lock:
            record = self.get(workspace, name, version)
            if record is None:
                return None
            changed = record.model_copy(update={"archived": archived})
            self._versions[self._versions.index(record)] = changed
            return changed

    def update_version(self, record: EnvironmentRecord) -> EnvironmentRecord | None:
        self._answer()
        with self._lock:
            stored = self.get(record.workspace, record.name, record.version)
            if stored is None:
                return None
            changed = with_mutable(stored, record)
            self._versions[self._versions.index(stored)] = changed
            return changed

    def container(self, workspace: str, name: str) -> Container | None:
        self._answer()
        with self._lock:
            versions = self._of(workspace, name)
        if not versions:
            return None
        counter = max((int(r.version) for r in versions if r.version.isascii() and r.version.isdigit()), default=0)
        return Container(workspace=workspace, name=name, latest_version=versions[-1].version,
                         next_version=str(counter + 1), archived=all(r.archived for r in versions))

    def containers(self, workspace: str, *, archived: bool | None, top: int,
                   cursor: str | None) -> Page[Container]:
        self._answer()
        with self._lock:
            names = sorted({r.name for r in self._versions
                            if r.workspace == workspace and not r.anonymous and r.name > (cursor or "")})
            found = [c for c in (self.container(workspace, n) for n in names)
                     if c is not None and archived in (None, c.archived)]
        return Page(found[:top], found[top - 1].name if len(found) > top else None)

    def insert_job(self, job: JobRecord) -> bool:
        self._answer()
        with self._lock:
            if (job.workspace, job.id) in self._jobs:
                return False
            self._jobs[job.workspace, job.id] = job
            return True

    def has_hash(self, workspace: str, hash_hex: str) -> bool:
        self._answer()
        with self._lock:
            return any(v.workspace == workspace and v.description.hash == hash_hex for v in self._versions)

    def each_version(self) -> Iterator[EnvironmentRecord]:
        self._answer()
        with self._lock:
            versions = list(self._versions)
        yield from versions

    def get_job(self, workspace: str, job_id: str) -> JobRecord | None:
        self._answer()
        with self._lock:
            return self._jobs.get((workspace, job_id))

    def update_job(self, workspace: str, job_id: str,
                   change: Callable[[JobRecord], JobRecord]) -> JobRecord | None:
        self._answer()
        with self._lock:
            job = self._jobs.get((workspace, job_id))
            if job is None:
                return None
            self._jobs[workspace, job_id] = job = change(job)
            return job


class FakeBuildStore(_Answering):
    """Builds by id in creation order, the active build per hash, and logs as lists of lines."""

    def __init__(self) -> None:
        super().__init__()
        self._builds: dict[str, BuildRecord] = {}
        self._active: dict[str, str] = {}
        self._logs: dict[str, list[str]] = {}

    def start_or_join(self, record: BuildRecord) -> tuple[BuildRecord, bool]:
        self._answer()
        with self._lock:
            active = self._builds.get(self._active.get(record.hash, ""))
            if active is not None and active.id == record.id:
                return active, True  # a retry of the call that created it
            if active is not None and not active.status.finished:
                return active, False
            record = record.model_copy(update={"updated_at": datetime.now(UTC)})
            self._builds[record.id] = record
            self._active[record.hash] = record.id
            return record, True

    def get(self, build_id: str) -> BuildRecord | None:
        self._answer()
        with self._lock:
            return self._builds.get(build_id)

    def latest_for_hash(self, hash_hex: str) -> BuildRecord | None:
        self._answer()
        with self._lock:
            return next((b for b in reversed(self._builds.values()) if b.hash == hash_hex), None)

    def count_for_hash(self, hash_hex: str) -> int:
        self._answer()
        with self._lock:
            return sum(1 for b in self._builds.values() if b.hash == hash_hex)

    def update(self, record: BuildRecord) -> BuildRecord:
        self._answer()
        with self._lock:
            stored = self._builds.get(record.id)
            if stored is None:
                raise NotFound(f"no build {record.id}")
            if stored.revision != record.revision:
                raise StaleRecord(f"build {record.id} is at revision {stored.revision}, not {record.revision}")
            saved = record.model_copy(update={
                "revision": stored.revision + 1, "updated_at": datetime.now(UTC),
                "cancel_requested": record.cancel_requested or stored.cancel_requested,
            })
            self._builds[record.id] = saved
            if saved.status.finished and self._active.get(saved.hash) == saved.id:
                del self._active[saved.hash]
            return saved

    def request_cancel(self, build_id: str) -> BuildRecord | None:
        self._answer()
        with self._lock:
            stored = self._builds.get(build_id)
            if stored is None or stored.status.finished or stored.cancel_requested:
                return stored
            saved = stored.model_copy(update={"cancel_requested": True, "revision": stored.revision + 1,
                                              "updated_at": datetime.now(UTC)})
            self._builds[build_id] = saved
            return saved

    def unfinished(self, *, idle_since: datetime) -> list[BuildRecord]:
        self._answer()
        since = idle_since.replace(tzinfo=UTC) if idle_since.tzinfo is None else idle_since
        with self._lock:
            idle = [b for b in self._builds.values()
                    if not b.status.finished and (b.updated_at or b.created_at) < since]
        return sorted(idle, key=lambda b: b.updated_at or b.created_at)

    def append_log(self, build_id: str, lines: list[str]) -> None:
        self._answer()
        with self._lock:
            self._logs.setdefault(build_id, []).extend(lines)

    def read_log(self, build_id: str, offset: int) -> list[str]:
        self._answer()
        with self._lock:
            return list(self._logs.get(build_id, [])[offset:])
