"""Build contexts as manifests: every file's relative path, executable bit, size and sha256."""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable
from functools import cached_property
from typing import BinaryIO, Protocol

from docker.utils.build import PatternMatcher
from pydantic import BaseModel, ConfigDict

from shared.domain.errors import InvalidContext

DOCKERIGNORE = ".dockerignore"


class FileEntry(BaseModel):
    """One regular file of a context."""

    model_config = ConfigDict(frozen=True)

    path: str
    executable: bool
    size: int
    sha256: str


class ContextManifest(BaseModel):
    """A whole context: files sorted by path, plus the folders (empty ones matter to Azure ML's hash)."""

    model_config = ConfigDict(frozen=True)

    files: tuple[FileEntry, ...]
    dirs: tuple[str, ...] = ()

    @classmethod
    def of(cls, files: Iterable[FileEntry], dirs: Iterable[str] = ()) -> ContextManifest:
        """Build a manifest in its canonical order, refusing unsafe or repeated paths."""
        entries = sorted(files, key=lambda f: f.path)
        seen: set[str] = set()
        for entry in entries:
            check_member_path(entry.path)
            if entry.path in seen:
                raise InvalidContext(f"the path '{entry.path}' appears twice", where=entry.path)
            seen.add(entry.path)
        folders = sorted({check_member_path(d) for d in dirs} | _parents(seen))
        both = sorted(seen.intersection(folders))
        if both:  # an archive may say so ('a' and 'a/b' both files); no folder on disk can be unpacked from it
            raise InvalidContext(f"'{both[0]}' is both a file and a folder", where=both[0])
        return cls(files=tuple(entries), dirs=tuple(folders))

    @cached_property
    def digest(self) -> str:
        """The context's content address: sha256 over its canonical JSON form."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()

    @property
    def size(self) -> int:
        """Total bytes of file content."""
        return sum(f.size for f in self.files)

    @cached_property
    def by_path(self) -> dict[str, FileEntry]:
        """Entries by path."""
        return {entry.path: entry for entry in self.files}

    def get(self, path: str) -> FileEntry | None:
        """The entry at `path`, if any."""
        return self.by_path.get(path)


class ContextSource(Protocol):
    """A build context whose files can be read (a stored upload, a user's folder, a generated plan)."""

    @property
    def manifest(self) -> ContextManifest:
        """Its manifest."""

    def open(self, rel: str) -> BinaryIO:
        """A member for reading."""

    def read_text(self, rel: str) -> str | None:
        """A member as text, or None when absent."""


def _parents(paths: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent:
            out.add(parent)
            parent = posixpath.dirname(parent)
    return out


def check_member_path(path: str) -> str:
    """Refuse absolute paths, '..' and empty segments, names not in UTF-8 and odd characters in a context member."""
    if shown(path) != path:  # a tar or a folder name of bytes that are not UTF-8, read as lone surrogates
        raise InvalidContext(f"'{shown(path)}' is not a UTF-8 file name", where=shown(path))
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise InvalidContext(f"'{path}' is not a relative POSIX path", where=path or "<empty>")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidContext(f"'{path}' leaves the context or is not normalised ('.', '..' or '//')", where=path)
    return path


def shown(name: str) -> str:
    """A name as a message can quote it: bytes that were not UTF-8 (lone surrogates) as backslash escapes."""
    return name if name.isascii() else name.encode("utf8", errors="backslashreplace").decode()


def check_dockerfile_path(path: object, *, where: str = "build.dockerfile_path") -> str:
    """A Dockerfile path relative to its context, inside it."""
    if not isinstance(path, str) or not path:
        raise InvalidContext("dockerfile_path must be a non-empty relative path", where=where)
    normal = posixpath.normpath(path.removeprefix("./"))
    if normal.startswith("/") or normal == ".." or normal.startswith("../"):
        raise InvalidContext(f"'{path}' points outside the build context", where=where)
    return normal


def dockerignore_patterns(text: str | None) -> list[str]:
    """Patterns of a .dockerignore, read as the docker CLI reads them."""
    if not text:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def included_files(manifest: ContextManifest, dockerignore: str | None, dockerfile_path: str) -> list[FileEntry]:
    """The files a builder would receive: .dockerignore honoured, the Dockerfile always kept."""
    patterns = dockerignore_patterns(dockerignore)
    if not patterns:
        return list(manifest.files)
    matcher = PatternMatcher(patterns)
    # PatternMatcher is typed for PathLike but matches on the string it is given
    return [f for f in manifest.files if f.path == dockerfile_path or not matcher.matches(f.path)]  # type: ignore[arg-type]
