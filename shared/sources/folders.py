"""Build-context folders on disk: their manifest, file access and a tar.gz of them for upload."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from shared.domain.context import ContextManifest, FileEntry
from shared.domain.errors import InvalidContext

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, read in large chunks (the hot path of hashing a context)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _inside(root: Path, path: Path) -> Path:
    """Resolve a link and refuse it when it loops, dangles or points out of the context folder."""
    rel = path.relative_to(root).as_posix()
    try:
        target = path.resolve(strict=True)
    except RuntimeError as error:  # Python 3.11 reports a loop this way
        raise InvalidContext(f"'{rel}' is a link that loops back on itself", where=rel) from error
    except OSError as error:
        raise InvalidContext(f"'{rel}' is a link to nothing (its target does not exist)", where=rel) from error
    if target != root and root not in target.parents:
        raise InvalidContext(f"'{rel}' is a link to outside the build context", where=rel)
    return target


class ContextFolder:
    """A build context as a folder of the user's: links inside it followed, links out of it refused."""

    def __init__(self, root: Path) -> None:
        if root.is_symlink():
            raise InvalidContext("the build context is a link; name the folder itself", where=str(root.name))
        if not root.is_dir():
            raise InvalidContext("the build context folder does not exist", where=str(root))
        self.root = root.resolve()
        self._paths: dict[str, Path] = {}
        self.manifest = self._scan()

    def _scan(self) -> ContextManifest:
        files: list[FileEntry] = []
        dirs: list[str] = []
        for folder, subdirs, names in os.walk(self.root, followlinks=False):
            base = Path(folder)
            for name in list(subdirs):
                path = base / name
                rel = path.relative_to(self.root).as_posix()
                if path.is_symlink():
                    target = _inside(self.root, path)
                    raise InvalidContext(f"'{rel}' links to the folder '{target.name}'; copy it instead", where=rel)
                dirs.append(rel)
            for name in names:
                path = base / name
                rel = path.relative_to(self.root).as_posix()
                real = _inside(self.root, path) if path.is_symlink() else path
                info = real.stat()
                if not stat.S_ISREG(info.st_mode):
                    raise InvalidContext(f"'{rel}' is not a regular file", where=rel)
                self._paths[rel] = real
                files.append(FileEntry(path=rel, executable=bool(info.st_mode & 0o111), size=info.st_size,
                                       sha256=file_sha256(real)))
        return ContextManifest.of(files, dirs)

    def open(self, rel: str) -> BinaryIO:
        """Open a member for reading by its relative path."""
        return self._paths[rel].open("rb")

    def read_text(self, rel: str) -> str | None:
        """A member's text, or None when the context has no such file."""
        path = self._paths.get(rel)
        return None if path is None else path.read_text(encoding="utf8", errors="replace")

    def tar_gz(self) -> bytes:
        """The context as a gzip'd tar: regular files and folders only, owners and times zeroed."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for rel in self.manifest.dirs:
                info = tarfile.TarInfo(rel)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            for entry in self.manifest.files:
                info = tarfile.TarInfo(entry.path)
                info.size, info.mode = entry.size, 0o755 if entry.executable else 0o644
                with self.open(entry.path) as handle:
                    archive.addfile(info, handle)
        return buffer.getvalue()
