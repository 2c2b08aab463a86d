"""Build contexts on Azure Blob Storage: content-addressed blobs and manifests in one container."""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.storage.blob import ContainerClient, LinearRetry, StorageStreamDownloader

from shared.adapters.azure_errors import outage_as
from shared.adapters.file_contexts import is_sha256, manifest_hex
from shared.domain.context import ContextManifest
from shared.domain.errors import StoreUnavailable
from shared.settings import Settings

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


_SPOOL_IN_MEMORY = 4 << 20  # most context files are small: keep those off the disk while hashing
_READ_CHUNK = 4 << 20


def client_options() -> dict[str, Any]:
    """Retries and timeouts: an unreachable account fails in seconds (the callers retry on their own), while
    a read may take a while for a multi-megabyte block. Downloads come in 4 MiB pieces, not the SDK's
    32 MiB first piece, so an opened blob holds little memory."""
    return {"retry_policy": LinearRetry(backoff=1, retry_total=2, random_jitter_range=1),
            "connection_timeout": 2, "read_timeout": 60,
            "max_single_get_size": _READ_CHUNK, "max_chunk_get_size": _READ_CHUNK}


class BlobContextStore:
    """Blobs at `blobs/<sha256>`, manifests at `manifests/<hex>.json`.

    Nothing is ever half-written under a final name: bytes are spooled (in memory, then a local temporary
    file) while they are hashed, and uploaded only once the whole stream has been read. The upload itself is atomic
    in Blob Storage: one Put Blob, or staged blocks that become the blob only when the block list is
    committed (uncommitted blocks are never readable and the service discards them)."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobContextStore:
        """The configured container: an emulator's connection string, or the account URL signed in with the
        managed identity. Creates the container when `storage_create` is set."""
        if settings.storage_connection_string:
            container = ContainerClient.from_connection_string(settings.storage_connection_string,
                                                               settings.blob_container, **client_options())
        elif settings.blob_account_url:
            container = ContainerClient(settings.blob_account_url, settings.blob_container,
                                        credential=DefaultAzureCredential(), **client_options())
        else:
            raise ValueError("the blob store needs ENVHUB_BLOB_ACCOUNT_URL or ENVHUB_STORAGE_CONNECTION_STRING")
        store = cls(container)
        if settings.storage_create:
            store.create()
        return store

    def create(self) -> None:
        """Create the container unless it exists (emulators; infra/ does it in Azure)."""
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()

    def check(self) -> None:
        with self._answered():
            self.container.get_container_properties()

    def _answered(self) -> contextlib.AbstractContextManager[None]:
        return outage_as(StoreUnavailable, "Blob Storage", self.container.container_name)

    def write_blob(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        # The name is the hash, known only at the end: spool first, so a failing stream uploads nothing.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            sha = digest.hexdigest()
            blob = self.container.get_blob_client(f"blobs/{sha}")
            with self._answered():
                if not blob.exists():
                    spool.seek(0)
                    # Same name, same bytes: a concurrent writer of the same content winning the race is fine.
                    with contextlib.suppress(ResourceExistsError):
                        blob.upload_blob(spool, length=size, overwrite=False)
        return sha, size

    def open_blob(self, sha256: str) -> BinaryIO:
        if not is_sha256(sha256):
            raise FileNotFoundError(f"no blob {sha256!r}")
        with self._answered():
            try:
                downloader = self.container.download_blob(f"blobs/{sha256}")
            except ResourceNotFoundError as error:
                raise FileNotFoundError(f"no blob {sha256}") from error
        # Streamed chunk by chunk as the caller reads, never all in memory.
        return io.BufferedReader(DownloadReader(downloader), buffer_size=1 << 20)

    def has_blob(self, sha256: str) -> bool:
        if not is_sha256(sha256):
            return False
        with self._answered():
            return bool(self.container.get_blob_client(f"blobs/{sha256}").exists())

    def delete_blob(self, sha256: str, *, unless_written_after: datetime | None = None) -> bool:
        if not is_sha256(sha256):
            return False
        # With a time, the service deletes only if the blob is unmodified since then: the check and the delete
        # are one request, so an upload that touched the blob meanwhile keeps it.
        with self._answered():
            try:
                self.container.delete_blob(f"blobs/{sha256}", if_unmodified_since=unless_written_after)
            except (ResourceNotFoundError, ResourceModifiedError):
                return False
        return True

    def touch_blob(self, sha256: str) -> bool:
        if not is_sha256(sha256):
            return False
        with self._answered():
            try:  # a metadata write moves Last-Modified, which is what the garbage collector reads
                self.container.get_blob_client(f"blobs/{sha256}").set_blob_metadata(
                    {"touched": datetime.now(UTC).strftime("%Y%m%dT%H%M%S")})
            except ResourceNotFoundError:
                return False
        return True

    def blobs(self) -> Iterator[tuple[str, datetime]]:
        with self._answered():
            listed = list(self.container.list_blobs(name_starts_with="blobs/"))
        for item in listed:
            sha = item.name.removeprefix("blobs/")
            if is_sha256(sha) and item.last_modified is not None:
                modified = item.last_modified
                yield sha, modified if modified.tzinfo else modified.replace(tzinfo=UTC)

    def manifests(self) -> Iterator[str]:
        with self._answered():
            listed = list(self.container.list_blobs(name_starts_with="manifests/"))
        for item in listed:
            hex_part = item.name.removeprefix("manifests/").removesuffix(".json")
            if is_sha256(hex_part):
                yield f"sha256:{hex_part}"

    def save_manifest(self, manifest: ContextManifest) -> str:
        digest = manifest.digest
        blob = self.container.get_blob_client(f"manifests/{digest.removeprefix('sha256:')}.json")
        # content-addressed: an existing one is this one
        with self._answered(), contextlib.suppress(ResourceExistsError):
            blob.upload_blob(manifest.model_dump_json().encode(), overwrite=False)
        return digest

    def load_manifest(self, digest: str) -> ContextManifest | None:
        hex_part = manifest_hex(digest)
        if hex_part is None:
            return None
        with self._answered():
            try:
                data = self.container.download_blob(f"manifests/{hex_part}.json").readall()
            except ResourceNotFoundError:
                return None
        return ContextManifest.model_validate_json(data)


class DownloadReader(io.RawIOBase):
    """A blob download as a raw stream, so that it can be buffered into an ordinary binary file object."""

    def __init__(self, downloader: StorageStreamDownloader[bytes]) -> None:
        self._downloader = downloader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._downloader.read(len(view))
        view[: len(data)] = data
        return len(data)
