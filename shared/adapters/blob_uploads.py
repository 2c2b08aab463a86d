"""Azure ML SDK uploads on Blob Storage: a container per workspace and SAS tokens scoped to it."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime, timedelta
from typing import BinaryIO
from urllib.parse import urlsplit

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from shared.adapters.azure_errors import outage_as
from shared.adapters.blob_contexts import DownloadReader, client_options
from shared.domain.datastore import UploadedBlob
from shared.domain.errors import StoreUnavailable
from shared.settings import Settings

# Create and write for the SDK's PUTs and its metadata mark; read because it first asks for the first file's
# properties (to skip a folder uploaded before) and stops on a 403. No list and no delete: a holder cannot see
# what else is there, nor remove anything; it can read only a blob whose name (a content hash) it already knows.
PERMISSIONS = ContainerSasPermissions(read=True, create=True, write=True)
_CLOCK_SKEW = timedelta(minutes=5)  # start a SAS a little in the past: clients' clocks differ


class BlobUploadArea:
    """Containers in one account. With an account key (Azurite) a service SAS signed by it; in Azure, where keys
    are off, a user-delegation SAS signed by a key the managed identity obtains (Storage Blob Data Owner has it)."""

    available = True

    def __init__(self, service: BlobServiceClient, *, account_key: str | None, endpoint: str) -> None:
        self.service = service
        self.account = str(service.account_name)
        self.account_key = account_key
        self.endpoint = endpoint
        self._made: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobUploadArea:
        """The account the build contexts live in: an emulator's connection string, or the managed identity."""
        if settings.storage_connection_string:
            service = BlobServiceClient.from_connection_string(settings.storage_connection_string, **client_options())
            key = getattr(service.credential, "account_key", None)
        elif settings.blob_account_url:
            service = BlobServiceClient(settings.blob_account_url, credential=DefaultAzureCredential(),
                                        **client_options())
            key = None
        else:
            raise ValueError("SDK uploads need ENVHUB_BLOB_ACCOUNT_URL or ENVHUB_STORAGE_CONNECTION_STRING")
        return cls(service, account_key=key, endpoint=settings.datastore_endpoint or _suffix(service))

    def _answered(self, container: str) -> contextlib.AbstractContextManager[None]:
        return outage_as(StoreUnavailable, "Blob Storage", container)

    def check(self) -> None:
        with self._answered("uploads"):
            next(iter(self.service.list_containers(results_per_page=1).by_page()), None)

    def ensure_container(self, container: str) -> None:
        if container in self._made:
            return
        with self._answered(container), contextlib.suppress(ResourceExistsError):
            self.service.create_container(container)
        self._made.add(container)

    def sas(self, container: str, *, lifetime: timedelta) -> str:
        now = datetime.now(UTC)
        start, expiry = now - _CLOCK_SKEW, now + lifetime
        if self.account_key is not None:
            return generate_container_sas(self.account, container, account_key=self.account_key,
                                          permission=PERMISSIONS, start=start, expiry=expiry)
        with self._answered(container):
            key = self.service.get_user_delegation_key(start, expiry)
        return generate_container_sas(self.account, container, user_delegation_key=key, permission=PERMISSIONS,
                                      start=start, expiry=expiry, protocol="https")

    def folder(self, container: str, prefix: str, *, limit: int) -> list[UploadedBlob]:
        found: list[UploadedBlob] = []
        with self._answered(container):
            try:
                for item in self.service.get_container_client(container).list_blobs(name_starts_with=prefix,
                                                                                    include=["metadata"]):
                    found.append(UploadedBlob(item.name, int(item.size or 0), dict(item.metadata or {})))
                    if len(found) >= limit:
                        break
            except ResourceNotFoundError:
                return []  # no container: nothing was uploaded for this workspace yet
        return found

    def open(self, container: str, name: str) -> BinaryIO:
        with self._answered(container):
            try:
                downloader = self.service.get_container_client(container).download_blob(name)
            except ResourceNotFoundError as error:
                raise FileNotFoundError(f"{container}/{name} is gone") from error
        return io.BufferedReader(DownloadReader(downloader), buffer_size=1 << 20)


def _suffix(service: BlobServiceClient) -> str:
    """The storage suffix of an account URL (`acct.blob.core.windows.net` -> core.windows.net); an emulator's
    path-style URL has none, and its host stands in."""
    host = urlsplit(service.url).netloc
    head = f"{service.account_name}.blob."
    return host[len(head):] if host.startswith(head) else host
