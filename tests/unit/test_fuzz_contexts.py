"""Fuzzing context uploads: random bytes, damaged archives and hostile members are refused, storing nothing."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass

from hypothesis import event, example, given
from hypothesis import strategies as st

from shared.domain.context import ContextManifest, check_member_path
from shared.domain.definition import BuildSpec, Definition, Kind
from shared.domain.describing import describe
from shared.domain.errors import EnvhubError, InvalidContext
from shared.services.contexts import ContextService, Limits
from tests.fakes.contexts import FakeContextStore
from tests.unit.fuzzing import FUZZ, parses_or_refuses

LIMITS = Limits(max_expanded_bytes=64 * 1024, max_files=20)
NAMES = ["Dockerfile", "a", "a/b", "./a", "a/", "a//b", "a/./b", "../x", "a/../../x", "/etc/passwd", "", ".", "..",
         "a\\b", "é/ü", "\udcff", "x\udcfe/y", "a\nb", " ", "-", "x" * 99, "d/" * 60 + "f", "y" * 300, ".dockerignore",
         ".amlignore", "A", "Dockerfile/x"]
KINDS = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
         tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"x", b"g", b"Z"]
LINKS = ["../../etc/passwd", "/etc/shadow", "a", "Dockerfile", "", "\udcff"]
FORMATS = [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]


class OneWay(io.BytesIO):
    """A request body that can only be read forward, as a streamed upload is."""

    def seekable(self) -> bool:
        return False


@dataclass(frozen=True)
class Member:
    name: str
    kind: bytes
    data: bytes
    link: str
    mode: int


members = st.builds(Member, name=st.sampled_from(NAMES) | st.text(max_size=12), kind=st.sampled_from(KINDS),
                    data=st.binary(max_size=64) | st.sampled_from([b"FROM busybox\n", b"ARG\nFROM x", b"*\n!a\n"]),
                    link=st.sampled_from(LINKS), mode=st.sampled_from([0o644, 0o755, 0o4755, 0]))


safe_members = st.builds(Member, name=st.sampled_from(["Dockerfile", "a", "b/c", "b/d/e", ".dockerignore", "f"]),
                         kind=st.sampled_from([tarfile.REGTYPE] * 3 + [tarfile.DIRTYPE]), link=st.just(""),
                         data=st.binary(max_size=3000) | st.just(b"FROM busybox\n"), mode=st.just(0o644))


def archive(items: list[Member], fmt: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tar:
        for item in items:
            info = tarfile.TarInfo(item.name)
            info.type, info.mode, info.linkname = item.kind, item.mode, item.link
            regular = item.kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
            info.size = len(item.data) if regular else 0
            try:
                tar.addfile(info, io.BytesIO(item.data) if regular else None)
            except (ValueError, UnicodeError):
                continue  # a name this format cannot write at all (tarfile refuses it on our side)
    return gzip.compress(raw.getvalue(), mtime=0)


def upload(body: bytes, *, seekable: bool) -> tuple[FakeContextStore, ContextManifest | EnvhubError]:
    store = FakeContextStore()
    contexts = ContextService(store=store, limits=LIMITS)
    stream = io.BytesIO(body) if seekable else OneWay(body)
    outcome = parses_or_refuses(lambda: contexts.upload(stream))
    event("accepted" if isinstance(outcome, ContextManifest) else f"refused ({outcome.slug})")
    if isinstance(outcome, EnvhubError):
        assert isinstance(outcome, InvalidContext), outcome
        assert store.stored() == [], "a refused upload stores nothing"
        return store, outcome
    return store, outcome


def check_accepted(store: FakeContextStore, manifest: ContextManifest) -> None:
    """An accepted context is safe to unpack and reads back: what a registration over it does next."""
    files = {entry.path for entry in manifest.files}
    for path in [*files, *manifest.dirs]:
        check_member_path(path)
        path.encode("utf8")  # it names a blob, a file on a builder, a line of the hash
    assert not files & set(manifest.dirs), "no path is both a file and a folder"
    context = ContextService(store=store, limits=LIMITS).get(manifest.digest)
    assert context is not None and context.manifest == manifest
    definition = Definition(kind=Kind.DOCKER_BUILD, build=BuildSpec(context=manifest.digest))
    parses_or_refuses(lambda: describe(definition, context))


@FUZZ
@given(st.binary(max_size=2048), st.booleans())
def test_random_bytes(body: bytes, seekable: bool) -> None:
    _, outcome = upload(body, seekable=seekable)
    assert isinstance(outcome, InvalidContext)


@FUZZ
@given(st.binary(max_size=4096), st.booleans())
def test_random_tar_streams_in_valid_gzip(raw: bytes, seekable: bool) -> None:
    store, outcome = upload(gzip.compress(raw, mtime=0), seekable=seekable)
    if isinstance(outcome, ContextManifest):
        check_accepted(store, outcome)


@FUZZ
@given(st.lists(members, min_size=1, max_size=8), st.sampled_from(FORMATS), st.booleans())
@example([Member("\udcff", tarfile.REGTYPE, b"x", "", 0o644), Member("Dockerfile", tarfile.REGTYPE,
                                                                    b"FROM busybox\n", "", 0o644)],
         tarfile.GNU_FORMAT, True)
@example([Member("a", tarfile.REGTYPE, b"x", "", 0o644), Member("a/b", tarfile.REGTYPE, b"y", "", 0o644)],
         tarfile.USTAR_FORMAT, True)
@example([Member("Dockerfile", tarfile.SYMTYPE, b"", "\udcff", 0o644)], tarfile.GNU_FORMAT, False)
def test_hostile_members(items: list[Member], fmt: int, seekable: bool) -> None:
    store, outcome = upload(archive(items, fmt), seekable=seekable)
    if isinstance(outcome, ContextManifest):
        check_accepted(store, outcome)


@FUZZ
@given(st.lists(safe_members, min_size=1, max_size=6, unique_by=lambda m: m.name), st.sampled_from(FORMATS), st.data())
def test_truncated_or_corrupted_archives(items: list[Member], fmt: int, data: st.DataObject) -> None:
    """A good archive damaged in its gzip layer (the CRC should catch it) or in the tar inside (nothing does)."""
    raw = bytearray(gzip.decompress(archive(items, fmt)))
    layer = data.draw(st.sampled_from(["tar", "gzip"]), label="layer")
    body = bytearray(gzip.compress(bytes(raw), mtime=0)) if layer == "gzip" else raw
    if data.draw(st.booleans(), label="truncate"):
        del body[data.draw(st.integers(0, len(body) - 1), label="at"):]
    else:
        at = data.draw(st.integers(0, len(body) - 1), label="at")
        body[at] ^= data.draw(st.integers(1, 255), label="flip")
    if layer == "tar":
        body = bytearray(gzip.compress(bytes(body), mtime=0))
    store, outcome = upload(bytes(body), seekable=data.draw(st.booleans(), label="seekable"))
    if isinstance(outcome, ContextManifest):
        check_accepted(store, outcome)


PAX_RECORDS = [b"30 path=../../../../etc/passwd\n", b"999 path=x\n", b"abc\n", b"21 hdrcharset=BINARY\n",
               b"13 size=-5\n", b"16 size=99999\n", b"26 GNU.sparse.map=1,2,3\n", b"20 linkpath=../x\n",
               b"11 path=\xff\n", b"0 x=\n", b"9 =\n", b""]


def _field(value: bytes, width: int) -> bytes:
    return value[:width].ljust(width, b"\0")


@st.composite
def raw_member(draw: st.DrawFn) -> bytes:
    """One tar header written by hand (so any field may be wrong) with a correct checksum, then its data."""
    data = draw(st.lists(st.sampled_from(PAX_RECORDS), max_size=3).map(b"".join) | st.binary(max_size=600))
    name = draw(st.sampled_from(NAMES).map(lambda n: n.encode("utf8", "surrogateescape")) | st.binary(max_size=100))
    size = draw(st.sampled_from([b"%011o" % len(data), b"%011o" % (len(data) + 512), b"\x80" + bytes(10) + b"\x10",
                                 b"\xff" * 12, b"99999999999", b"", b" 7 "]) | st.binary(min_size=12, max_size=12))
    kind = draw(st.sampled_from(list(b"0125LKxgSDMNV\0")).map(lambda k: bytes([k])) | st.binary(min_size=1, max_size=1))
    header = bytearray(b"".join([
        _field(name, 100), b"0000644\0", b"0000000\0", b"0000000\0", _field(size, 12), b"00000000000\0", b" " * 8,
        kind, _field(draw(st.sampled_from([b"", b"../x", b"/etc"])), 100),
        draw(st.sampled_from([b"ustar\x0000", b"ustar  \0", b"\0" * 8])), _field(b"root", 32), _field(b"root", 32),
        b"0000000\0" * 2, _field(draw(st.sampled_from([b"", b"..", b"a" * 155])), 155), bytes(12)]))
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + data + bytes(-len(data) % 512)


@FUZZ
@given(st.lists(raw_member(), min_size=1, max_size=5), st.booleans(), st.booleans())
def test_hand_written_headers(members: list[bytes], end: bool, seekable: bool) -> None:
    body = b"".join(members) + (bytes(1024) if end else b"")
    store, outcome = upload(gzip.compress(body, mtime=0), seekable=seekable)
    if isinstance(outcome, ContextManifest):
        check_accepted(store, outcome)


@FUZZ
@given(st.integers(LIMITS.max_files + 1, 400), st.sampled_from(FORMATS), st.booleans())
def test_huge_member_counts_are_refused(count: int, fmt: int, seekable: bool) -> None:
    _, outcome = upload(archive([Member(f"f{i}", tarfile.REGTYPE, b"", "", 0o644) for i in range(count)], fmt),
                        seekable=seekable)
    assert isinstance(outcome, InvalidContext) and outcome.slug == "context-too-large"
