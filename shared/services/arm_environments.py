"""Azure ML's environment operations (containers and versions, ARM semantics) over envhub's environment records."""

from __future__ import annotations

from functools import partial
from typing import Any

from shared.domain import naming
from shared.domain.arm import (
    ArmVersion,
    check_order,
    container_archived,
    immutable_changes,
    list_view,
    merged,
    parse_version,
    plain_name,
    uploaded_context,
    with_context,
)
from shared.domain.definition import parse_document
from shared.domain.errors import InvalidDefinition, NotFound, ReservedName, VersionConflict
from shared.domain.records import Container, EnvironmentRecord
from shared.ports import Page
from shared.services.datastores import DatastoreService
from shared.services.environments import EnvironmentService, Registered
from shared.services.paging import page_of
from shared.sources.yaml_files import load_bounded

PAGE_SIZE = 100
_SCAN_PAGES = 20  # store pages read to fill one filtered page before answering with what was found


def _load_yaml(text: str, where: str) -> Any:
    return load_bounded(text, where=where)


class ArmEnvironments:
    """The same records envhub's own API reads and writes, with ARM's rules: a PUT creates (201) or merges
    (200), content that shapes the image never changes under a version (409), lists page by `$skip`."""

    def __init__(self, *, environments: EnvironmentService, datastores: DatastoreService,
                 page_size: int = PAGE_SIZE) -> None:
        self.environments = environments
        self.datastores = datastores
        self.store = environments.store
        self.page_size = page_size

    def put_version(self, *, workspace: str, name: str, version: str, body: object) -> Registered:
        """Create a version, or merge description, tags, properties and isArchived into an existing one."""
        arm = parse_version(body, load_yaml=_load_yaml)
        self._check_names(name, version, arm)
        uploaded = uploaded_context(arm)
        if uploaded is not None:  # a folder the SDK uploaded: stored as an envhub context, named by its digest
            arm = with_context(arm, self.datastores.import_folder(workspace, uploaded))
        definition = parse_document(arm.document).definition
        existing = self.store.get(workspace, name, version)
        if existing is None:
            try:
                return self._create(workspace, name, version, arm)
            except VersionConflict:
                existing = self.store.get(workspace, name, version)  # a concurrent PUT of this version won
                if existing is None:
                    raise
        changed = immutable_changes(existing.definition, definition)
        if changed and arm.anonymous:
            raise InvalidDefinition(f"'{version}' is the anonymous version of another definition (its "
                                    f"{', '.join(changed)} differ): the client hashed something else",
                                    where="version")
        if changed:
            raise VersionConflict(
                f"version '{version}' of '{name}' exists with another {', '.join(changed)}; versions are immutable "
                "(only description, tags, properties and isArchived change), so create a new version",
                where="version")
        record = merged(existing, definition, arm)
        if record != existing:
            updated = self.store.update_version(record)
            if updated is None:
                raise NotFound(f"version '{version}' of '{name}' is gone", where=f"{name}:{version}")
            record = updated
        return Registered(record, False)

    def _check_names(self, name: str, version: str, arm: ArmVersion) -> None:
        naming.check_version(version, where="version")
        if arm.anonymous != (name == naming.ANONYMOUS_NAME):
            raise InvalidDefinition(f"isAnonymous is true exactly for versions of '{naming.ANONYMOUS_NAME}'",
                                    where="properties.isAnonymous")
        if not arm.anonymous:
            naming.check_user_name(name, where="name")
            if self.environments.catalog.get(name) is not None:
                raise ReservedName(f"'{name}' is a curated environment and is read-only; register your version "
                                   "under a new name", where="name")

    def _create(self, workspace: str, name: str, version: str, arm: ArmVersion) -> Registered:
        if arm.anonymous:
            definition = parse_document(arm.document).definition
            registered = self.environments.register_anonymous(workspace=workspace, definition=definition,
                                                              version=version)
        else:
            registered = self.environments.register(workspace=workspace, name=name, document=arm.document,
                                                    version=version)
        if arm.archived and registered.created:
            archived = self.store.set_archived(workspace, name, version, True)
            return Registered(archived or registered.record, True)
        return registered

    def get_version(self, *, workspace: str, name: str, version: str) -> EnvironmentRecord:
        """One version (curated environments included)."""
        return self.environments.get(workspace=workspace, name=plain_name(name), version=version)

    def versions(self, *, workspace: str, name: str, view: str | None, order_by: str | None, top: int | None,
                 cursor: str | None) -> Page[EnvironmentRecord]:
        """Versions newest first, filtered by `listViewType`; a page may be short (ARM allows it)."""
        archived = list_view(view)
        check_order(order_by)
        name = plain_name(name)
        size = min(top or self.page_size, self.page_size)
        found: list[EnvironmentRecord] = []
        for _ in range(_SCAN_PAGES):
            page = page_of(partial(self.store.history, workspace, name, top=size, cursor=cursor))
            found.extend(r for r in page.items if archived in (None, r.archived))
            cursor = page.next_cursor
            if found or cursor is None:
                break
        curated = self.environments.catalog.get(name)
        if not found and cursor is None and curated is not None and archived is not True:
            found = [curated]
        return Page(found, cursor)

    def container(self, *, workspace: str, name: str) -> Container:
        """A name's container: latestVersion and nextVersion drive the SDK's versionless create."""
        container = self.store.container(workspace, name)
        if container is None:
            raise NotFound(f"'{name}' has no version in workspace '{workspace}'", where=name)
        return container

    def containers(self, *, workspace: str, view: str | None, top: int | None,
                   cursor: str | None) -> Page[Container]:
        """Containers by name, filtered by `listViewType` (archived: every version is)."""
        archived = list_view(view)
        size = min(top or self.page_size, self.page_size)
        return page_of(lambda: self.store.containers(workspace, archived=archived, top=size, cursor=cursor))

    def put_container(self, *, workspace: str, name: str, body: object) -> Container:
        """Archive or restore a name: every one of its versions (containers hold nothing else in envhub)."""
        archived = container_archived(body)
        container = self.container(workspace=workspace, name=name)
        if archived is None:
            return container
        versions: list[str] = []
        cursor: str | None = None
        while True:  # the whole list first: changing flags while paging would be paging a moving list
            page = self.store.history(workspace, name, top=self.page_size, cursor=cursor)
            versions.extend(r.version for r in page.items if r.archived != archived)
            if (cursor := page.next_cursor) is None:
                break
        for version in versions:
            self.store.set_archived(workspace, name, version, archived)
        return self.container(workspace=workspace, name=name)
