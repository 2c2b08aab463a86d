"""Registering, reading, comparing and archiving environment versions in a workspace."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain import naming
from shared.domain.context import ContextSource
from shared.domain.definition import Definition, Submission, parse_document
from shared.domain.describing import describe
from shared.domain.errors import InvalidDefinition, NotFound, ReservedName, VersionConflict
from shared.domain.outbound import Allowlist
from shared.domain.records import Change, Description, EnvironmentRecord, diff
from shared.ports import CuratedCatalog, EnvironmentStore, Page
from shared.services.contexts import ContextService
from shared.services.paging import page_of

log = logging.getLogger(__name__)
LATEST = "latest"
DEFAULT_ALLOWLIST = Allowlist.parse(None)  # without the settings' list: the default registries, nothing local


@dataclass(frozen=True)
class Registered:
    """A registration's outcome: the version, and whether this call created it."""

    record: EnvironmentRecord
    created: bool


class EnvironmentService:
    """The environment use cases."""

    def __init__(self, *, store: EnvironmentStore, contexts: ContextService, catalog: CuratedCatalog,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 allowed: Allowlist = DEFAULT_ALLOWLIST) -> None:
        self.store = store
        self.contexts = contexts
        self.catalog = catalog
        self.clock = clock
        self.allowed = allowed  # the registries a definition's images may come from (ENVHUB_ALLOWED_REGISTRIES)

    def describe_document(self, document: dict[str, Any]) -> Description:
        """Check and describe a definition without storing anything."""
        return self.describe_submission(parse_document(document))

    def describe_submission(self, submission: Submission, *, where: str = "") -> Description:
        """Describe a parsed definition, reading its uploaded context if it has one; every image it names (the
        image, or each one its Dockerfile pulls) must come from an allowed registry. `where` prefixes fields."""
        definition = submission.definition
        context = None
        if definition.build is not None:
            context = self.contexts.get(definition.build.context)
            if context is None:
                raise InvalidDefinition(
                    f"no uploaded build context has the digest {definition.build.context}; upload it first",
                    where="build.context",
                )
        described = describe(definition, context)
        self._check_registries(definition, context, where)
        return described

    def _check_registries(self, definition: Definition, context: ContextSource | None, where: str) -> None:
        """Refuse (RefusedRegistry, a 422) images from registries off the allowlist before anything is stored:
        what is never registered is never scanned or built."""
        prefix = f"{where}#" if where else ""
        if definition.image is not None:
            self.allowed.check_reference(definition.image, where=f"{prefix}image")
        elif definition.build is not None and context is not None:
            dockerfile = definition.build.dockerfile
            self.allowed.check_dockerfile(context.read_text(dockerfile) or "",
                                          where=f"{prefix}build context: {dockerfile}")

    def register(self, *, workspace: str, name: str, document: dict[str, Any],
                 version: str | None = None) -> Registered:
        """Register a new version; an explicit version is immutable, a missing one is the next integer."""
        naming.check_name(workspace, where="workspace")
        naming.check_user_name(name, where="name")
        self._refuse_curated(name)
        if document.get("name") not in (None, name):
            raise InvalidDefinition(f"the body names '{document['name']}' but the URL names '{name}'", where="name")
        body_version = document.get("version")
        if version is not None and body_version is not None and str(body_version) != version:
            raise InvalidDefinition(f"the body says version '{body_version}' but the URL says '{version}'",
                                    where="version")
        submission = parse_document({**document, "name": name, "version": version or body_version})
        described = self.describe_submission(submission)
        if submission.version is not None:
            return self._register_explicit(workspace, name, submission.version, described)
        record = self.store.insert_next(self._record(workspace, name, "0", described))
        log.info("registered %s:%s in %s (hash %s)", name, record.version, workspace, described.hash[:12])
        return Registered(record, True)

    def _register_explicit(self, workspace: str, name: str, version: str, described: Description,
                           anonymous: bool = False) -> Registered:
        record = self._record(workspace, name, version, described, anonymous)
        if self.store.insert(record):
            log.info("registered %s:%s in %s (hash %s)", name, version, workspace, described.hash[:12])
            return Registered(record, True)
        existing = self.store.get(workspace, name, version)
        if existing is not None and existing.definition == described.definition:
            return Registered(existing, False)
        raise VersionConflict(
            f"version '{version}' of '{name}' already exists with another definition; versions are immutable, "
            "so register this one under a new version (or leave the version out)",
            where="version",
        )

    def _record(self, workspace: str, name: str, version: str, described: Description,
                anonymous: bool = False) -> EnvironmentRecord:
        return EnvironmentRecord(workspace=workspace, name=name, version=version, description=described,
                                 anonymous=anonymous, created_at=self.clock())

    def _refuse_curated(self, name: str) -> None:
        if self.catalog.get(name) is not None:
            raise ReservedName(
                f"'{name}' is a curated environment and is read-only; to change it, register your "
                "version under a new name",
                where="name",
            )

    def register_anonymous(self, *, workspace: str, definition: Definition, where: str = "",
                           version: str | None = None) -> Registered:
        """Record an inline job environment under Azure ML's anonymous name and its content version; a `version`
        the client computed (azure-ai-ml does) must be that one."""
        described = self.describe_submission(Submission(name=None, version=None, definition=definition),
                                             where=where)
        if version is not None and version != described.anonymous_version:
            inputs = ("the context's files and the Dockerfile path" if definition.build is not None else
                      ", ".join(["the image", *(["the conda file"] if definition.conda_file else []),
                                 *(["the inference config"] if definition.inference_config else [])]))
            raise InvalidDefinition(
                f"'{version}' is not this definition's anonymous version: Azure ML's algorithm gives "
                f"'{described.anonymous_version}' from {inputs}, so the client hashed something else",
                where="version")
        return self._register_explicit(workspace, naming.ANONYMOUS_NAME, described.anonymous_version, described,
                                       anonymous=True)

    def knows_hash(self, workspace: str, hash_hex: str) -> bool:
        """Whether the workspace has a version (any, anonymous and archived included) with this hash, or the
        hash is a curated environment's (those are public)."""
        return (self.store.has_hash(workspace, hash_hex)
                or any(c.description.hash == hash_hex for c in self.catalog.all()))

    def get(self, *, workspace: str, name: str, version: str) -> EnvironmentRecord:
        """One version, or the latest when `version` is 'latest'; curated names resolve in the catalog."""
        curated = self.catalog.get(name)
        if curated is not None and version in (LATEST, curated.version):
            return curated
        record = (self.store.latest(workspace, name) if version == LATEST
                  else self.store.get(workspace, name, version))
        if record is None:
            if version == LATEST and self.store.history(workspace, name, top=1, cursor=None).items:
                # Only on the error path: one page of history tells "all archived" from "never registered".
                raise NotFound(f"every version of '{name}' is archived; restore one or name a version",
                               where=f"{name}:{version}")
            what = f"'{name}'" if version == LATEST else f"version '{version}' of '{name}'"
            raise NotFound(f"{what} is not registered in workspace '{workspace}'", where=f"{name}:{version}")
        return record

    def list_latest(self, *, workspace: str, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        """Latest version of each name, anonymous and archived hidden."""
        return page_of(lambda: self.store.list_latest(workspace, top=top, cursor=cursor))

    def history(self, *, workspace: str, name: str, top: int, cursor: str | None) -> Page[EnvironmentRecord]:
        """Every version of a name, newest first."""
        page = page_of(lambda: self.store.history(workspace, name, top=top, cursor=cursor))
        if not page.items and cursor is None:
            curated = self.catalog.get(name)
            if curated is not None:
                return Page([curated], None)
            raise NotFound(f"'{name}' is not registered in workspace '{workspace}'", where=name)
        return page

    def diff(self, *, workspace: str, name: str, version: str, against: str) -> tuple[list[Change], bool]:
        """Changed fields between two versions, and whether the hash (so the image) changed."""
        after = self.get(workspace=workspace, name=name, version=version)
        before = self.get(workspace=workspace, name=name, version=against)
        return diff(before, after), before.description.hash != after.description.hash

    def set_archived(self, *, workspace: str, name: str, version: str, archived: bool) -> EnvironmentRecord:
        """Archive (hide from listings and 'latest') or restore a version."""
        if self.catalog.get(name) is not None:
            raise ReservedName(f"'{name}' is curated and read-only", where="name")
        record = self.store.set_archived(workspace, name, version, archived)
        if record is None:
            raise NotFound(f"version '{version}' of '{name}' is not registered in workspace '{workspace}'",
                           where=f"{name}:{version}")
        return record
