"""Contexts stored file by file (the SDK's uploads): limits as read, canonical manifests, nothing left on refusal."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from functools import partial
from typing import IO

import pytest

from shared.domain.context import ContextManifest, FileEntry
from shared.domain.errors import ContextTooLarge, InvalidContext
from shared.services.contexts import ContextService, Limits
from tests.fakes.contexts import FakeContextStore


def _files(contents: dict[str, bytes], announced: int | None = None) -> list[tuple[str, int, Callable[[], IO[bytes]]]]:
    return [(path, len(data) if announced is None else announced, partial(io.BytesIO, data))
            for path, data in contents.items()]


def _service(max_files: int = 10, max_bytes: int = 100) -> tuple[ContextService, FakeContextStore]:
    store = FakeContextStore()
    return ContextService(store=store, limits=Limits(max_expanded_bytes=max_bytes, max_files=max_files)), store


def test_files_make_the_manifest_a_tar_of_them_would() -> None:
    service, store = _service()
    manifest = service.store_files(_files({"b/x.txt": b"x", "a.txt": b"aa"}))
    expected = ContextManifest.of([FileEntry(path="a.txt", executable=False, size=2, sha256=_sha(b"aa")),
                                   FileEntry(path="b/x.txt", executable=False, size=1, sha256=_sha(b"x"))])
    assert manifest == expected and manifest.dirs == ("b",)
    assert store.load_manifest(manifest.digest) == manifest


@pytest.mark.parametrize(("contents", "announced", "error", "says"), [
    ({f"f{i}": b"x" for i in range(11)}, None, ContextTooLarge, "more than 10 files"),
    ({"a": b"x" * 60, "b": b"x" * 60}, None, ContextTooLarge, "more than 100 bytes"),
    ({"a": b"x" * 60, "b": b"x" * 60}, 1, ContextTooLarge, "more than 100 bytes"),  # grew after it was listed
    ({"a": b"x", "../b": b"y"}, None, InvalidContext, "leaves the context"),
    ({}, None, InvalidContext, "holds no files"),
])
def test_a_refused_context_leaves_nothing_stored(contents: dict[str, bytes], announced: int | None,
                                                 error: type[Exception], says: str) -> None:
    service, store = _service()
    with pytest.raises(error, match=says):
        service.store_files(_files(contents, announced))
    assert list(store.blobs()) == [] and list(store.manifests()) == []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
