"""Bounds on definitions (nodes with aliases expanded, depth, strings, tags), versions, and context uploads."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.http_api.limits import json_depth
from shared.adapters.file_contexts import FileContextStore
from shared.domain.definition import parse_document
from shared.domain.errors import ContextTooLarge, InvalidContext, InvalidDefinition
from shared.domain.limits import DocumentLimits, LimitExceeded, check_document, check_value
from shared.services.contexts import ContextService, Limits
from shared.sources.local import describe_local
from shared.sources.yaml_files import load_bounded, read_yaml
from tests.fakes.contexts import FakeContextStore

IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1"


def bomb_yaml(levels: int = 9, width: int = 9, under: str = "inference_config") -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    body = "\n".join("  " + line for line in lines)
    return f"name: bomb\nimage: {IMAGE}\n{under}:\n{body}\n"


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return value


# --- the checker over parsed values -------------------------------------------------------------------------------

def test_counts_shared_subtrees_as_expanded_without_walking_them() -> None:
    leaf = list(range(10))
    tree: Any = leaf
    for _ in range(30):  # 10**30 nodes when expanded
        tree = [tree] * 10
    started = time.process_time()  # CPU time: other processes cannot make it fail
    with pytest.raises(LimitExceeded, match="more than 100000 values"):
        check_value({"inference_config": tree})
    assert time.process_time() - started < 0.5


def test_counts_exactly() -> None:
    shared = ["x", "y"]
    assert check_value({"a": shared, "b": shared}) == 1 + 2 + 2 * 3  # the mapping, two keys, the list twice
    assert check_value([shared] * 3, limits=DocumentLimits(max_nodes=10)) == 10
    with pytest.raises(LimitExceeded):
        check_value([shared] * 4, limits=DocumentLimits(max_nodes=12))


def test_depth_counts_shared_subtrees_where_they_appear() -> None:
    assert check_value(nested(64)) == 64
    with pytest.raises(LimitExceeded, match="deeper than 64"):
        check_value(nested(65))
    deep = nested(60)
    check_value([[deep]], limits=DocumentLimits(max_depth=62))
    with pytest.raises(LimitExceeded, match="deeper than 62"):
        check_value([deep, [[deep]]], limits=DocumentLimits(max_depth=62))  # memo hit, deeper than before


def test_a_very_deep_value_is_refused_without_recursing_through_it() -> None:
    with pytest.raises(LimitExceeded, match="deeper"):
        check_value(nested(100_000))


def test_a_cycle_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(LimitExceeded, match="refers to itself"):
        check_value({"inference_config": {"x": loop}})


def test_strings_and_tags_are_bounded() -> None:
    with pytest.raises(LimitExceeded, match="65537 characters"):
        check_value({"description": "x" * (64 * 1024 + 1)})
    with pytest.raises(LimitExceeded, match="'tags' has 101 entries") as caught:
        check_document({"tags": {f"k{i}": "v" for i in range(101)}}, where="env.yml")
    assert caught.value.where == "env.yml#tags"
    check_document({"tags": {f"k{i}": "v" for i in range(100)}, "properties": {}})


def test_parse_document_applies_the_bounds() -> None:
    doc = {"image": IMAGE, "properties": {f"p{i}": "v" for i in range(101)}}
    with pytest.raises(InvalidDefinition, match="'properties' has 101"):
        parse_document(doc)
    parse_document({"image": IMAGE, "properties": {"p": "v"}})
    with pytest.raises(InvalidDefinition, match="at most 3"):
        parse_document({"image": IMAGE, "tags": {"a": "1", "b": "2", "c": "3", "d": "4"}},
                       limits=DocumentLimits(max_entries=3))


# --- versions ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["01", "007", "00"])
def test_versions_with_leading_zeros_are_refused(version: str) -> None:
    with pytest.raises(InvalidDefinition, match="leading zero") as caught:
        parse_document({"image": IMAGE, "version": version})
    assert caught.value.where == "version"


@pytest.mark.parametrize("version", ["0", "1", "10", 1, "01.2", "1.0", "v01", "2024.01"])
def test_canonical_versions_pass(version: object) -> None:
    assert parse_document({"image": IMAGE, "version": version}).version == str(version)


# --- YAML --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("under", ["inference_config", "conda_file"])
def test_a_yaml_alias_bomb_is_refused_before_construction(tmp_path: Path, under: str) -> None:
    path = tmp_path / "bomb.yml"
    text = bomb_yaml(under=under)
    if under == "conda_file":
        text = text.replace("conda_file:\n", "conda_file:\n  variables:\n").replace("\n  a", "\n    a")
    path.write_text(text)
    started = time.process_time()  # CPU time: other processes cannot make it fail
    with pytest.raises(LimitExceeded, match="aliases counted as expanded") as caught:
        read_yaml(path)
    assert str(path) in str(caught.value.where)
    with pytest.raises(LimitExceeded):
        describe_local(path)  # what `envhub hash` and `envhub register` run
    assert time.process_time() - started < 1


def test_the_checked_constructed_value_is_refused_too() -> None:
    import yaml

    bomb = yaml.safe_load(bomb_yaml())  # constructed as shared lists: cheap until expanded
    started = time.process_time()  # CPU time: other processes cannot make it fail
    with pytest.raises(LimitExceeded):
        parse_document(bomb)
    assert time.process_time() - started < 0.5


def test_deep_yaml_is_refused_while_composing(tmp_path: Path) -> None:
    path = tmp_path / "deep.yml"
    path.write_text("inference_config: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(LimitExceeded, match="deeper than 64") as caught:
        read_yaml(path)
    assert caught.value.where is not None and caught.value.where.startswith(f"{path}:1:")


def test_recursive_yaml_alias_is_refused() -> None:
    with pytest.raises(LimitExceeded, match="refers to itself"):
        load_bounded("a: &a [*a]\n")


def test_a_long_scalar_and_a_large_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LimitExceeded, match="characters"):
        load_bounded("description: " + "x" * 70_000 + "\n")
    big = tmp_path / "big.yml"
    big.write_text("# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(LimitExceeded, match="bytes"):
        read_yaml(big)


def test_ordinary_yaml_still_loads() -> None:
    assert load_bounded("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}
    assert load_bounded("") is None


# --- JSON depth scan ---------------------------------------------------------------------------------------------

def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{"}]}', 10) == 3
    assert json_depth(b'{"a": "\\"[[[["}', 10) == 1
    assert json_depth(b"[" * 1000 + b"]" * 1000, 100) == 101  # stops early


# --- context uploads ---------------------------------------------------------------------------------------------

def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def many_files(count: int) -> bytes:
    """A tar.gz of `count` empty files, made quickly from one header template."""
    raw = io.BytesIO()
    for index in range(count):
        info = tarfile.TarInfo(f"f{index}")
        raw.write(info.tobuf(format=tarfile.USTAR_FORMAT))
    raw.write(b"\0" * 1024)
    return gzip.compress(raw.getvalue(), compresslevel=1)


LIMITS = Limits(max_expanded_bytes=10 * 1024 * 1024, max_files=1000)
FILES = {"Dockerfile": b"FROM busybox\n", "data.bin": bytes(range(256)) * 4096}


@pytest.fixture
def store() -> FakeContextStore:
    return FakeContextStore()


def test_a_truncated_archive_is_refused_and_stores_nothing(store: FakeContextStore) -> None:
    whole = tar_gz(FILES)
    service = ContextService(store=store, limits=LIMITS)
    for cut in (len(whole) // 2, len(whole) - 4, len(whole) - 9):
        with pytest.raises(InvalidContext, match="not a complete"):
            service.upload(io.BytesIO(whole[:cut]))
        assert store.stored() == []
    service.upload(io.BytesIO(whole))
    assert len(store.manifest_json) == 1


def test_a_corrupted_archive_is_refused(store: FakeContextStore) -> None:
    whole = bytearray(tar_gz(FILES))
    whole[-6] ^= 0xFF  # the CRC trailer
    with pytest.raises(InvalidContext):
        ContextService(store=store, limits=LIMITS).upload(io.BytesIO(bytes(whole)))
    assert store.stored() == []


class OneWay(io.RawIOBase):
    """A stream that cannot seek: the upload is read once, storing as it goes."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_refused_one_way_upload_removes_only_the_blobs_it_created(store: FakeContextStore) -> None:
    service = ContextService(store=store, limits=LIMITS)
    service.upload(io.BytesIO(tar_gz({"Dockerfile": b"FROM busybox\n"})))
    before = set(store.blob_data)
    whole = tar_gz({"Dockerfile": b"FROM busybox\n", "new.bin": b"new" * 100_000, "more": b"x" * 200_000})
    with pytest.raises(InvalidContext):
        service.upload(io.BufferedReader(OneWay(whole[: len(whole) - 4])))
    assert set(store.blob_data) == before  # the shared Dockerfile blob stays
    assert len(store.manifest_json) == 1


def test_a_failing_store_removes_what_the_upload_wrote(store: FakeContextStore) -> None:
    class Failing(FakeContextStore):
        def save_manifest(self, manifest: Any) -> str:
            raise ConnectionError("down")

    failing = Failing()
    with pytest.raises(ConnectionError):
        ContextService(store=failing, limits=LIMITS).upload(io.BytesIO(tar_gz(FILES)))
    assert failing.stored() == []


def test_too_many_files_are_refused_before_any_is_stored(store: FakeContextStore) -> None:
    archive = many_files(100_000)
    started = time.process_time()  # CPU time: other processes cannot make it fail
    with pytest.raises(ContextTooLarge, match="more than 1000 files"):
        ContextService(store=store, limits=LIMITS).upload(io.BytesIO(archive))
    assert time.process_time() - started < 1
    assert store.stored() == []


def test_a_gzip_bomb_stops_at_the_bound(store: FakeContextStore) -> None:
    raw = tarfile.TarInfo("Dockerfile").tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * (64 * 1024 * 1024)
    with pytest.raises(ContextTooLarge, match="expands to more than"):
        ContextService(store=store, limits=Limits(max_expanded_bytes=1024, max_files=10)).upload(
            io.BytesIO(gzip.compress(raw, compresslevel=1)))
    assert store.stored() == []


def stores(tmp_path: Path) -> Iterator[Any]:
    yield FakeContextStore()
    yield FileContextStore(tmp_path / "contexts")


def test_garbage_collection_removes_old_unreferenced_blobs(tmp_path: Path) -> None:
    for store in stores(tmp_path):
        service = ContextService(store=store, limits=LIMITS)
        kept = service.upload(io.BytesIO(tar_gz(FILES)))
        orphan, _ = store.write_blob([b"orphan"])
        young, _ = store.write_blob([b"young"])
        now = datetime.now(UTC)
        assert service.collect_garbage(timedelta(hours=1), now=now) == 0  # all young
        later = now + timedelta(hours=2)
        if isinstance(store, FakeContextStore):
            store.written[young] = later
        else:
            young_path = store.root / "blobs" / young[:2] / young
            stamp = later.timestamp()
            os.utime(young_path, (stamp, stamp))
        assert service.collect_garbage(timedelta(hours=1), now=later + timedelta(minutes=1)) == 1
        assert not store.has_blob(orphan) and store.has_blob(young)
        assert all(store.has_blob(entry.sha256) for entry in kept.files)
        assert {sha for sha, _ in store.blobs()} == {young} | {entry.sha256 for entry in kept.files}
        store.delete_blob(young)
        store.delete_blob(young)  # gone already: no error
        store.delete_blob("../../etc/passwd")
        assert not store.has_blob(young)


def test_an_upload_reusing_an_orphan_during_collection_keeps_it(tmp_path: Path) -> None:
    """The race: an upload finds an old orphan blob with its content while the collector runs, between the
    collector's listing of blobs and its delete, before the upload's manifest exists."""
    for store in stores(tmp_path):
        service = ContextService(store=store, limits=LIMITS)
        old = datetime.now(UTC) - timedelta(days=2)
        archive = tar_gz(FILES)
        reused = service.upload(io.BytesIO(archive))
        for entry in reused.files:  # its blobs become old orphans: the manifest is forgotten
            if isinstance(store, FakeContextStore):
                store.written[entry.sha256] = old
            else:
                os.utime(store.root / "blobs" / entry.sha256[:2] / entry.sha256, (old.timestamp(),) * 2)
        listed_manifests = store.manifests

        def manifests_while_an_upload_reuses_the_blobs(store: Any = store, reused: Any = reused,
                                                        listed: Any = listed_manifests) -> Iterator[str]:
            found = [d for d in listed() if d != reused.digest]  # as if its manifest were not saved yet
            for entry in reused.files:
                assert store.touch_blob(entry.sha256)  # what the upload does on finding the blob
            return iter(found)

        store.manifests = manifests_while_an_upload_reuses_the_blobs
        assert service.collect_garbage(timedelta(hours=1)) == 0
        assert all(store.has_blob(entry.sha256) for entry in reused.files)


def test_a_member_declaring_too_many_bytes_is_refused_at_its_header(store: FakeContextStore) -> None:
    info = tarfile.TarInfo("huge")
    info.size = 3 << 30
    archive = gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 4096)
    started = time.process_time()  # CPU time: other processes cannot make it fail
    with pytest.raises(ContextTooLarge, match="expands to more than") as caught:
        ContextService(store=store, limits=LIMITS).upload(io.BytesIO(archive))
    assert caught.value.where == "huge" and time.process_time() - started < 0.5
    assert store.stored() == []


def test_pax_and_gnu_long_names_are_counted_and_stored(store: FakeContextStore) -> None:
    long_name = "deep/" * 40 + "file.txt"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as archive:
            for name, data in {"Dockerfile": b"FROM busybox\n", long_name: b"x" * 1000}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        service = ContextService(store=store, limits=Limits(max_expanded_bytes=1 << 20, max_files=2))
        manifest = service.upload(io.BytesIO(buffer.getvalue()))
        assert sorted(entry.path for entry in manifest.files) == sorted(["Dockerfile", long_name])
