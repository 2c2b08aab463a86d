"""Uploading build contexts: a tar.gz checked member by member, stored content-addressed."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO

from shared.domain.context import ContextManifest, FileEntry, check_member_path
from shared.domain.errors import ContextTooLarge, InvalidContext
from shared.ports import ContextStore

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """How much a context may hold once expanded."""

    max_expanded_bytes: int
    max_files: int


class StoredContext:
    """A stored context as a ContextSource."""

    def __init__(self, store: ContextStore, manifest: ContextManifest) -> None:
        self._store = store
        self._manifest = manifest
        self._by_path = {entry.path: entry for entry in manifest.files}

    @property
    def manifest(self) -> ContextManifest:
        return self._manifest

    def open(self, rel: str) -> BinaryIO:
        return self._store.open_blob(self._by_path[rel].sha256)

    def read_text(self, rel: str) -> str | None:
        entry = self._by_path.get(rel)
        if entry is None:
            return None
        with self.open(rel) as handle:
            return handle.read().decode("utf8", errors="replace")


class ContextService:
    """Accepts uploads and serves stored contexts."""

    def __init__(self, *, store: ContextStore, limits: Limits) -> None:
        self.store = store
        self.limits = limits

    def upload(self, archive: BinaryIO) -> ContextManifest:
        """Read a tar.gz stream; store its files, then its manifest. Refused archives store no manifest."""
        files: list[FileEntry] = []
        dirs: list[str] = []
        expanded = 0
        try:
            with tarfile.open(fileobj=archive, mode="r|gz") as tar:
                for member in tar:
                    name = member.name.removeprefix("./").rstrip("/")
                    if not name:
                        continue  # the archive's own root folder
                    path = check_member_path(name)
                    if member.isdir():
                        dirs.append(path)
                        continue
                    if not member.isfile():
                        raise InvalidContext(
                            f"'{path}' is a {_kind(member)}; a build context holds regular files and folders only",
                            where=path,
                        )
                    expanded += member.size
                    if expanded > self.limits.max_expanded_bytes:
                        raise ContextTooLarge(
                            f"the context expands to more than {self.limits.max_expanded_bytes} bytes", where=path
                        )
                    if len(files) >= self.limits.max_files:
                        raise ContextTooLarge(f"the context has more than {self.limits.max_files} files", where=path)
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular file always has content
                    sha, size = self.store.write_blob(_chunks(handle))
                    files.append(FileEntry(path=path, executable=bool(member.mode & 0o111), size=size, sha256=sha))
        except (tarfile.TarError, EOFError, OSError) as error:
            raise InvalidContext(f"not a readable tar.gz archive ({error})", where="<body>") from error
        if not files:
            raise InvalidContext("the archive holds no files", where="<body>")
        manifest = ContextManifest.of(files, dirs)
        self.store.save_manifest(manifest)
        return manifest

    def get(self, digest: str) -> StoredContext | None:
        """A stored context by digest."""
        manifest = self.store.load_manifest(digest)
        return None if manifest is None else StoredContext(self.store, manifest)


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to '{member.linkname}'"
    if member.islnk():
        return f"hard link to '{member.linkname}'"
    return "device, fifo or other special file"
