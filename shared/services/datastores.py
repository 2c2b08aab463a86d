"""Azure ML's workspace datastore: where the SDK uploads build contexts, and those uploads made envhub contexts."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import BinaryIO

from shared.domain.datastore import WHERE, Datastore, completed, context_folder, upload_container
from shared.domain.errors import InvalidContext, InvalidDefinition, NotFound
from shared.ports import UploadArea
from shared.services.contexts import ContextService

log = logging.getLogger(__name__)
NO_UPLOADS = ("envhub keeps build contexts on this machine's disk (ENVHUB_CONTEXTS=file), so Azure ML's SDK has "
              "no datastore to upload a folder to: run `envhub serve --emulators` (Azurite) or the Azure home, or "
              "register the folder with `envhub register` and use the digest it prints as the build path")


class DatastoreService:
    """One datastore per workspace (its own container, so a SAS for it reaches no other workspace's uploads)."""

    def __init__(self, *, area: UploadArea, contexts: ContextService, container_prefix: str) -> None:
        self.area = area
        self.contexts = contexts
        self.prefix = container_prefix

    def datastore(self, workspace: str) -> Datastore:
        """The workspace's datastore, its container made on first use."""
        if not self.area.available:
            raise NotFound(NO_UPLOADS, where="datastores/workspaceblobstore")
        store = Datastore(account=self.area.account, container=upload_container(workspace, self.prefix),
                          endpoint=self.area.endpoint)
        self.area.ensure_container(store.container)
        return store

    def secret(self, workspace: str, lifetime: timedelta) -> str:
        """A SAS for the workspace's container: read, create and write blobs, for at most an hour."""
        store = self.datastore(workspace)
        return self.area.sas(store.container, lifetime=lifetime)

    def import_folder(self, workspace: str, uri: str) -> str:
        """Store the folder a `build.contextUri` names as an envhub build context; its digest.

        The same files give the same digest as `envhub register` of the folder (without executable bits and empty
        folders, which Blob Storage does not keep)."""
        if not self.area.available:
            raise InvalidDefinition(NO_UPLOADS, where=WHERE)
        store = Datastore(account=self.area.account, container=upload_container(workspace, self.prefix),
                          endpoint=self.area.endpoint)
        folder = context_folder(uri, store)
        blobs = self.area.folder(store.container, folder, limit=self.contexts.limits.max_files + 1)
        if not blobs:
            raise InvalidDefinition(f"nothing was uploaded at {uri[:200]!r}", where=WHERE)
        if not completed(blobs):
            raise InvalidDefinition(f"the upload at {uri[:200]!r} is not complete (no file is marked "
                                    "upload_status=completed); upload it again", where=WHERE)
        try:
            manifest = self.contexts.store_files(
                (blob.name[len(folder):], blob.size, partial(self._open, store.container, blob.name))
                for blob in blobs)
        except InvalidContext as error:  # the folder, not this request's body, breaks the rule: a 400, not a 413
            place = f" ('{error.where}')" if error.where else ""
            raise InvalidDefinition(f"the uploaded folder{place}: {error.detail}", where=WHERE) from None
        log.info("imported build context %s from %s (%d files)", manifest.digest, uri, len(manifest.files))
        return manifest.digest

    def _open(self, container: str, name: str) -> BinaryIO:
        try:
            return self.area.open(container, name)
        except FileNotFoundError:
            raise InvalidDefinition(f"'{name}' was removed while it was read; upload the folder again",
                                    where=WHERE) from None
