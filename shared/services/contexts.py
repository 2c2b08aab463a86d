"""Uploading build contexts: a tar.gz checked member by member, stored content-addressed."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, BinaryIO

from shared.domain.context import ContextManifest, FileEntry, check_member_path, shown
from shared.domain.errors import ContextTooLarge, InvalidContext
from shared.ports import ContextStore

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 4 << 20
_SLACK = 1 << 20  # tar end-of-archive blocks and record padding
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = frozenset({b"0", b"\0", b"7", b"S"})  # what tarfile counts as a regular file


@dataclass(frozen=True)
class Limits:
    """How much a context may hold once expanded."""

    max_expanded_bytes: int
    max_files: int

    def check(self, count: int, expanded: int, where: str) -> None:
        """Refuse a context once it has more files or expanded bytes than allowed, naming the file that crossed."""
        if count > self.max_files:
            raise ContextTooLarge(f"the context has more than {self.max_files} files", where=where)
        if expanded > self.max_expanded_bytes:
            raise ContextTooLarge(f"the context expands to more than {self.max_expanded_bytes} bytes", where=where)


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
        """Read a tar.gz stream; store its files, then its manifest. Refused archives store nothing.

        A seekable archive is first read through without storing anything (member paths, kinds, count, sizes
        and a clean end of the gzip stream), so a refusal costs no writes; then it is stored. Blobs this upload
        created are deleted again when it fails."""
        if archive.seekable():
            start = archive.tell()
            self._count(archive)
            archive.seek(start)
            self._read(archive, store=False)
            archive.seek(start)
        created: list[str] = []
        try:
            files, dirs = self._read(archive, store=True, created=created)
            manifest = ContextManifest.of(files, dirs)
            self.store.save_manifest(manifest)
        except BaseException:
            self._discard(created)
            raise
        return manifest

    def store_files(self, files: Iterable[tuple[str, int, Callable[[], IO[bytes]]]]) -> ContextManifest:
        """Store a context given file by file (path, announced size, opener), within the limits; store its manifest
        last. Files keep no executable bit (where they come from has none). Refused contexts leave no new blob."""
        created: list[str] = []
        entries: list[FileEntry] = []
        expanded = 0
        try:
            for count, (path, announced, opener) in enumerate(files, start=1):
                check_member_path(path)
                self.limits.check(count, expanded + announced, path)
                with opener() as handle:
                    sha, size = self._store(handle, created)
                expanded += size  # as read: a file that grew since it was listed counts as it is
                self.limits.check(count, expanded, path)
                entries.append(FileEntry(path=path, executable=False, size=size, sha256=sha))
            if not entries:
                raise InvalidContext("the context holds no files", where="<context>")
            manifest = ContextManifest.of(entries)
            self.store.save_manifest(manifest)
        except BaseException:
            self._discard(created)
            raise
        return manifest

    def _stream(self, archive: BinaryIO) -> _Bounded:
        # The gzip layer is ours, not tarfile's: GzipFile checks the CRC and length trailer and raises on a
        # truncated stream, which tarfile's own stream reader does not.
        return _Bounded(gzip.GzipFile(fileobj=archive, mode="rb"),
                        self.limits.max_expanded_bytes + (self.limits.max_files + 1) * 2048 + _SLACK)

    def _count(self, archive: BinaryIO) -> None:
        """A quick first look at the raw tar headers, without tarfile: refuse too many files or bytes as soon as
        the count passes the limit, and an archive whose gzip stream does not end cleanly."""
        stream = self._stream(archive)
        count = expanded = 0
        try:
            while True:
                header = _read_exactly(stream, _BLOCK)
                if len(header) < _BLOCK or header == _ZERO_BLOCK:
                    break  # the end-of-archive marker (or a short tail, which tarfile refuses next)
                size = _header_size(header[124:136])
                if header[156:157] in _REGULAR:
                    name = header[:100].split(b"\0", 1)[0].decode("utf8", errors="replace")
                    count += 1
                    expanded += size
                    self.limits.check(count, expanded, name)
                _skip(stream, -(-size // _BLOCK) * _BLOCK)
            while stream.read(_CHUNK):  # the rest (padding): the gzip stream must end cleanly
                pass
        except (EOFError, OSError, zlib.error, ValueError) as error:
            raise InvalidContext(f"not a complete, readable tar.gz archive ({error})", where="<body>") from error

    def _read(self, archive: BinaryIO, *, store: bool,
              created: list[str] | None = None) -> tuple[list[FileEntry], list[str]]:
        files: list[FileEntry] = []
        dirs: list[str] = []
        expanded = 0
        count = 0
        stream = self._stream(archive)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
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
                    count += 1
                    expanded += member.size
                    self.limits.check(count, expanded, path)
                    if not store:
                        continue
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular file always has content
                    sha, size = self._store(handle, created)
                    files.append(FileEntry(path=path, executable=bool(member.mode & 0o111), size=size, sha256=sha))
            while stream.read(_CHUNK):  # the rest (padding): the gzip stream must end cleanly
                pass
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            raise InvalidContext(f"not a complete, readable tar.gz archive ({error})", where="<body>") from error
        if count == 0:
            raise InvalidContext("the archive holds no files", where="<body>")
        return files, dirs

    def _store(self, handle: IO[bytes], created: list[str] | None) -> tuple[str, int]:
        """Store one file's bytes unless an equal blob is stored; note the blob in `created` when it is new."""
        digest = hashlib.sha256()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            for chunk in _chunks(handle):
                digest.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            sha = digest.hexdigest()
            if self.store.touch_blob(sha):  # reused: touched, so the garbage collector keeps it
                return sha, size
            spool.seek(0)
            stored, stored_size = self.store.write_blob(_chunks(spool))
        if created is not None:
            created.append(stored)
        return stored, stored_size

    def _discard(self, created: list[str]) -> None:
        for sha in created:
            try:
                self.store.delete_blob(sha)
            except Exception as error:  # the upload's own error matters more; GC removes it later
                log.warning("could not remove blob %s of a refused upload: %s", sha, error)

    def collect_garbage(self, older_than: timedelta, *, now: datetime | None = None) -> int:
        """Remove blobs no manifest references that were last written more than `older_than` ago; return how
        many. Keep `older_than` well above the longest upload, so an upload's blobs are never removed before
        its manifest is saved."""
        cutoff = (now or datetime.now(UTC)) - older_than
        candidates = [sha for sha, modified in self.store.blobs() if modified < cutoff]
        if not candidates:
            return 0
        referenced: set[str] = set()
        for digest in self.store.manifests():  # listed after the blobs: a manifest saved meanwhile is seen
            manifest = self.store.load_manifest(digest)
            if manifest is not None:
                referenced.update(entry.sha256 for entry in manifest.files)
        removed = 0
        for sha in candidates:
            if sha not in referenced:
                # An upload reusing this blob since the listing touched it: the delete is conditional on that.
                removed += self.store.delete_blob(sha, unless_written_after=cutoff)
        if removed:
            log.info("context garbage collection removed %d unreferenced blob(s)", removed)
        return removed

    def get(self, digest: str) -> StoredContext | None:
        """A stored context by digest."""
        manifest = self.store.load_manifest(digest)
        return None if manifest is None else StoredContext(self.store, manifest)


class _Bounded(io.RawIOBase):
    """A decompressed stream that refuses to yield more than `limit` bytes (a gzip bomb stops there)."""

    def __init__(self, inner: gzip.GzipFile, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        room = self._limit - self._read + 1
        data = self._inner.read(room if size is None or size < 0 else min(size, room))
        self._read += len(data)
        if self._read > self._limit:
            raise ContextTooLarge(f"the archive expands to more than {self._limit} bytes", where="<body>")
        return data


def _read_exactly(stream: _Bounded, size: int) -> bytes:
    data = stream.read(size)
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _skip(stream: _Bounded, size: int) -> None:
    while size > 0:
        data = stream.read(min(size, _CHUNK))
        if not data:
            raise EOFError("the archive ends inside a member")
        size -= len(data)


def _header_size(field: bytes) -> int:
    """A tar header's size field: octal digits, or GNU base-256 when the first byte's high bit is set."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip()
    return int(digits, 8) if digits else 0


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to '{shown(member.linkname)}'"
    if member.islnk():
        return f"hard link to '{shown(member.linkname)}'"
    return "device, fifo or other special file"
