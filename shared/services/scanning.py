"""The patch scan: fan out one message per base repository, observe each repository once, and when every one is
done, conclude (findings, rebuilds, redeploy flags, the report)."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from shared.domain import tags
from shared.domain.errors import NotFound, RegistryUnavailable
from shared.domain.images import ImageRef
from shared.domain.patching import base_use
from shared.domain.records import EnvironmentRecord
from shared.domain.scans import RefFacts, Scan, ScanRequest, ScanStatus, Trigger
from shared.ports import CuratedCatalog, EnvironmentStore, Page, QueueMessage, QueueSender, Registry, ScanStore
from shared.services import optimistic
from shared.services.paging import page_of
from shared.services.scan_conclusions import Concluder

log = logging.getLogger(__name__)
MAX_CAS_ATTEMPTS = 50  # every repository of a scan writes the same record: contention is expected
CREATED_KEY = "created@"  # `@` is in no tag: the digest memory also keeps immutable tags' creation times


class ScanService:
    """Starts scans, handles their repository messages, and shows them."""

    def __init__(self, *, store: EnvironmentStore, catalog: CuratedCatalog, scans: ScanStore, registry: Registry,
                 queue: QueueSender, concluder: Concluder, default_registry: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.catalog = catalog
        self.scans = scans
        self.registry = registry
        self.queue = queue
        self.concluder = concluder
        self.default_registry = default_registry
        self.clock = clock

    def records(self) -> Iterator[EnvironmentRecord]:
        """Every environment version the scan covers: all workspaces' and the curated ones."""
        yield from self.store.each_version()
        yield from self.catalog.all()

    def start(self, trigger: Trigger) -> Scan:
        """Fan out: one message per distinct base repository, listing the references in use there."""
        in_use: dict[str, set[str]] = defaultdict(set)
        for record in self.records():
            for text in record.description.base_images:
                use = base_use(text, default_registry=self.default_registry)
                if use is not None:
                    in_use[use.repository].add(use.reference)
        scan = Scan(id=uuid.uuid4().hex, trigger=trigger, started_at=self.clock(), repositories=sorted(in_use))
        self.scans.create_scan(scan)
        log.info("scan %s (%s): %d repositories", scan.id, trigger, len(scan.repositories))
        for repository in scan.repositories:
            self.queue.send(ScanRequest(scan_id=scan.id, repository=repository,
                                        references=sorted(in_use[repository])).model_dump_json())
        if not scan.repositories:
            return self._conclude(scan)
        return scan

    def get(self, scan_id: str) -> Scan:
        """One scan."""
        scan = self.scans.get_scan(scan_id)
        if scan is None:
            raise NotFound(f"no scan '{scan_id}'", where=scan_id)
        return scan

    def list_scans(self, *, top: int, cursor: str | None) -> Page[Scan]:
        """Scans, newest first."""
        return page_of(lambda: self.scans.list_scans(top=top, cursor=cursor))

    def handle_message(self, message: QueueMessage) -> None:
        """The queue's entry point: observe one repository; the last one concludes the scan."""
        request = ScanRequest.model_validate_json(message.body)
        scan = self.scans.get_scan(request.scan_id)
        if scan is None or scan.status is ScanStatus.FINISHED:
            return
        if request.repository not in scan.done:
            facts, error = self.observe(request.repository, request.references)
            scan = self._change(scan.id, lambda s: None if request.repository in s.done else {
                "done": [*s.done, request.repository],
                "facts": {**s.facts, request.repository: facts},
                "errors": {**s.errors, request.repository: error} if error else s.errors}) or scan
        if set(scan.done) >= set(scan.repositories) and scan.status is ScanStatus.RUNNING:
            self._conclude(scan)  # idempotent: a redelivered last message concludes again, harmlessly

    def give_up(self, message: QueueMessage, reason: str) -> None:
        """A repository message that kept failing counts as done with an error, so the scan still ends."""
        try:
            request = ScanRequest.model_validate_json(message.body)
        except ValueError:  # no scan request at all: nothing to count, and raising would keep it from the poison
            log.error("poisoned message %s is no scan request: %.200r", message.id, message.body)
            return
        scan = self._change(request.scan_id, lambda s: None if request.repository in s.done else {
            "done": [*s.done, request.repository], "errors": {**s.errors, request.repository: reason}})
        if scan is not None and set(scan.done) >= set(scan.repositories) and scan.status is ScanStatus.RUNNING:
            self._conclude(scan)

    def observe(self, repository: str, references: list[str]) -> tuple[dict[str, RefFacts], str | None]:
        """What the registry says about each reference in use; a registry failure is reported, not raised."""
        host, _, path = repository.partition("/")
        try:
            listed = self.registry.tags(host, path)
            if not listed:
                return {ref: RefFacts(exists=False) for ref in references}, None
            memory = self.scans.known_digests(repository)
            learned: dict[str, str] = {}
            heads: dict[str, str | None] = {}  # mutable tags asked in this observation (`latest` by several uses)
            facts = {ref: self._facts(host, path, ref, listed, memory, learned, heads) for ref in references}
            if learned:
                self.scans.remember_digests(repository, learned)
            return facts, None
        except RegistryUnavailable as error:
            log.warning("scan of %s failed: %s", repository, error)
            return {}, str(error)

    def _facts(self, host: str, path: str, reference: str, listed: list[str], memory: dict[str, str],
               learned: dict[str, str], heads: dict[str, str | None]) -> RefFacts:
        def ref(tag: str) -> ImageRef:
            return ImageRef(registry=host, repository=path, tag=tag)

        def head(tag: str) -> str | None:
            if tag not in heads:
                heads[tag] = self.registry.head(ref(tag))
            return heads[tag]

        if reference.startswith("{{"):
            match = tags.TEMPLATE.search(reference)
            pattern = None if match is None else tags.template_pattern(match)
            latest = head("latest")
            if latest is None:
                return RefFacts(exists=False)

            def digest_of(tag: str) -> str | None:
                # Immutable tags never move: each is asked once, ever, then remembered.
                if tag not in memory and tag not in learned:
                    found = self.registry.head(ref(tag))
                    if found is not None:
                        learned[tag] = found
                return memory.get(tag) or learned.get(tag)

            resolved = tags.latest_image_tag(listed, digest_of, latest, pattern)
            return RefFacts(digest=latest, resolved_tag=resolved)
        if tags.is_mutable(reference or None):
            digest = head(reference or "latest")
            return RefFacts(exists=digest is not None, digest=digest)
        if reference not in listed:
            return RefFacts(exists=False)
        newer = tags.newer_in_line(reference, listed)
        if not newer:
            return RefFacts()
        return RefFacts(newer_tag=newer[0], newer_created=self._created(ref(newer[0]), memory, learned))

    def _created(self, image: ImageRef, memory: dict[str, str], learned: dict[str, str]) -> datetime | None:
        """When an immutable tag's image was made: its config's `created` (remembered), else the tag's date."""
        key = CREATED_KEY + (image.tag or "")
        known = memory.get(key) or learned.get(key)
        if known is not None:
            return datetime.fromisoformat(known)
        created = self.registry.created(image)
        if created is None:
            parsed = tags.parse_tag(image.tag or "")
            released = None if parsed is None else parsed.released
            created = None if released is None else datetime(released.year, released.month, released.day, tzinfo=UTC)
        if created is not None:
            learned[key] = created.isoformat()
        return created

    def _conclude(self, scan: Scan) -> Scan:
        report = self.concluder.conclude(scan, self.records())
        done = self._change(scan.id, lambda s: None if s.status is ScanStatus.FINISHED else {
            "status": ScanStatus.FINISHED, "finished_at": self.clock(), **report})
        finished = done or self.get(scan.id)
        log.info("scan %s finished: %d new findings, %d redeploys, %d repository errors", finished.id,
                 len(finished.new_findings), len(finished.redeploys), len(finished.errors))
        return finished

    def _change(self, scan_id: str, changes: Callable[[Scan], dict[str, object] | None]) -> Scan | None:
        return optimistic.change(f"scan {scan_id}", lambda: self.scans.get_scan(scan_id), self.scans.update_scan,
                                 changes, attempts=MAX_CAS_ATTEMPTS)
