"""The ContextStore contract, run against the fake, local files and Blob Storage (Azurite)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.azurite import Azurite
from shared.adapters.blob_contexts import BlobContextStore
from shared.domain.context import ContextManifest, FileEntry
from tests.contract.storage_backends import (
    BLOCK,
    CONTEXT_STORES,
    ContextBackend,
    azurite_running,
    make_context_store,
    unreachable_context_store,
)

MALFORMED_DIGESTS = ["", "sha256:", "sha256:xyz", "sha256:" + "A" * 64, "sha256:" + "a" * 63, "../../etc/passwd",
                     "sha256:" + "a" * 64 + "/../x", "md5:" + "a" * 32]


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with azurite_running() as emulator:
        yield emulator


@pytest.fixture(params=CONTEXT_STORES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> ContextBackend:
    return make_context_store(request.param, tmp_path, request)


def read_all(backend: ContextBackend, sha: str) -> bytes:
    with backend.store.open_blob(sha) as handle:
        return handle.read()


def test_blobs_are_content_addressed(backend: ContextBackend) -> None:
    store = backend.store
    store.check()
    sha, size = store.write_blob([b"hello ", b"", b"world"])
    assert (sha, size) == (hashlib.sha256(b"hello world").hexdigest(), 11)
    assert store.has_blob(sha)
    assert read_all(backend, sha) == b"hello world"
    assert store.write_blob(iter([b"hello world"])) == (sha, 11)  # the same bytes, chunked otherwise: one blob
    assert len([name for name in backend.stored() if sha in name]) == 1


def test_an_empty_blob_has_size_zero(backend: ContextBackend) -> None:
    sha, size = backend.store.write_blob([])
    assert (sha, size) == (hashlib.sha256(b"").hexdigest(), 0)
    assert backend.store.has_blob(sha) and read_all(backend, sha) == b""


def test_unknown_or_malformed_blobs_are_absent(backend: ContextBackend) -> None:
    for name in ["0" * 64, "../../etc/passwd", "A" * 64, ""]:
        assert not backend.store.has_blob(name)
        with pytest.raises(FileNotFoundError):
            backend.store.open_blob(name)


def test_manifests_round_trip_by_digest(backend: ContextBackend) -> None:
    store = backend.store
    sha, size = store.write_blob([b"FROM scratch\n"])
    manifest = ContextManifest.of([FileEntry(path="Dockerfile", executable=False, size=size, sha256=sha),
                                   FileEntry(path="bin/run ü.sh", executable=True, size=size, sha256=sha)], ["empty"])
    digest = store.save_manifest(manifest)
    assert digest == manifest.digest and digest.startswith("sha256:")
    assert store.load_manifest(digest) == manifest
    assert store.save_manifest(manifest) == digest  # saving it again changes nothing
    assert store.load_manifest("sha256:" + "0" * 64) is None


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS)
def test_a_malformed_digest_loads_nothing(backend: ContextBackend, digest: str) -> None:
    assert backend.store.load_manifest(digest) is None


def test_a_failing_stream_leaves_nothing_behind(backend: ContextBackend) -> None:
    def chunks() -> Iterator[bytes]:
        yield os.urandom(BLOCK + 10)
        yield b"and a little more"
        raise OSError("the upload was cut off")

    with pytest.raises(OSError, match="cut off"):
        backend.store.write_blob(chunks())
    assert backend.stored() == []  # no blob under its final name, no temporary file or uncommitted blob


def test_a_blob_of_several_megabytes_round_trips(backend: ContextBackend) -> None:
    data = os.urandom(5 * BLOCK + 12_345)  # several blocks for Blob Storage, and an uneven tail
    sha, size = backend.store.write_blob(data[i:i + 700_000] for i in range(0, len(data), 700_000))
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    with backend.store.open_blob(sha) as handle:
        pieces = []
        while piece := handle.read(300_001):  # read in pieces as the builders do, not all at once
            pieces.append(piece)
    assert b"".join(pieces) == data
    assert read_all(backend, sha) == data


@pytest.mark.parametrize("kind", CONTEXT_STORES)
def test_check_fails_fast_when_the_backend_does_not_answer(kind: str, tmp_path: Path) -> None:
    store = unreachable_context_store(kind, tmp_path)
    start = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - each backend fails in its own way; any exception is the contract
        store.check()
    assert time.monotonic() - start < 10


@pytest.mark.integration
def test_a_large_blob_is_committed_whole_from_staged_blocks(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = make_context_store("blob", tmp_path, request).store
    assert isinstance(store, BlobContextStore)
    sha, _ = store.write_blob([os.urandom(3 * BLOCK + 1)])
    committed, uncommitted = store.container.get_blob_client(f"blobs/{sha}").get_block_list("all")
    assert (len(committed), len(uncommitted)) == (4, 0)  # the path where atomicity rests on the commit


def test_touch_protects_a_reused_blob_from_a_conditional_delete(backend: ContextBackend) -> None:
    store = backend.store
    sha, _ = store.write_blob([b"reused content"])
    written = dict(store.blobs())[sha]
    assert not store.touch_blob("0" * 64) and not store.touch_blob("../x")
    time.sleep(1.1)  # Last-Modified has a resolution of one second in Blob Storage
    assert store.touch_blob(sha)
    touched = dict(store.blobs())[sha]
    assert touched > written
    store.delete_blob(sha, unless_written_after=written)  # the collector's cutoff: touched since, so kept
    assert store.has_blob(sha)
    store.delete_blob(sha, unless_written_after=touched + timedelta(seconds=1))
    assert not store.has_blob(sha)
    store.delete_blob(sha, unless_written_after=touched)  # already gone: no error
