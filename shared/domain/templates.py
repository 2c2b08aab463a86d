"""Build-time templates of curated environments, found and replaced (no I/O here).

`{{latest-image-tag[:REGEX]}}` is the tag of a FROM image: the newest tag matching REGEX (the dated scheme by
default) that names the same image as the repository's `latest`. `{{latest-pypi-version[:pre]}}` follows a package
pin (`azureml-core=={{latest-pypi-version}}`, `pkg[extra]~={{latest-pypi-version}}`) in a Dockerfile, a conda file
or a pip requirements file: the package's newest release on the package index pip is configured with (`:pre`
admits pre-releases). Both stay as written in the definition (so in its hash) and are resolved when a build runs.

Templates on comment lines (`#` first) are left as written: nothing builds from them."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from shared.domain.context import ContextManifest, ContextSource, FileEntry
from shared.domain.errors import BuildFailed
from shared.domain.tags import TEMPLATE as IMAGE_TEMPLATE
from shared.domain.tags import template_pattern

MARKER = b"{{latest-"  # a file without it holds no build-time template
PRE = "pre"  # the one flag of {{latest-pypi-version:FLAG}}
# A distribution name as pip reads it (PEP 508): letters and digits, with `.`, `_`, `-` inside.
PACKAGE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
# Any `{{latest-pypi-version...}}`, usable or not, so that a stray one is reported rather than left in place.
ANY_PYPI_TEMPLATE = re.compile(r"\{\{latest-pypi-version(?::[^{}\s]*)?\}\}")
# The pin around it: the name (not preceded by another name character), optional extras, the operator.
PYPI_PIN = re.compile(
    r"(?<![\w.-])(?P<name>" + PACKAGE_NAME.pattern + r")(?P<extras>\[[^\]\s]*\])?\s*"
    r"(?P<op>===|==|~=|>=|<=|!=)\s*(?P<template>\{\{latest-pypi-version(?::(?P<flags>[^{}\s]*))?\}\})"
)
_QUOTES = "'\""


class PackageIndex(Protocol):
    """The package index pip is configured with (a port): which releases a package has."""

    def latest_version(self, package: str, *, pre: bool = False) -> str:
        """The newest release of `package` (pre-releases too with `pre`). Raises BuildFailed when the index has
        none (an unknown package: final), BuilderUnavailable when the index could not be asked (worth a retry)."""


@dataclass(frozen=True)
class ImageSite:
    """One `{{latest-image-tag[:REGEX]}}` in a Dockerfile: where it is and the word around it."""

    start: int
    end: int
    template: str  # as written, e.g. {{latest-image-tag:\d{8}\.v1}}
    pattern: str | None  # its REGEX, None for the default (dated) scheme
    token: str  # the whitespace-delimited word holding it, quotes stripped, e.g. mcr.microsoft.com/x:{{...}}
    line: int  # 1-based


@dataclass(frozen=True)
class PackageSite:
    """One `{{latest-pypi-version[:pre]}}` after a package pin."""

    start: int  # of the template only: the name and operator stay as written
    end: int
    written: str  # the whole pin as written, e.g. azureml-core=={{latest-pypi-version}}
    package: str  # the distribution name, without extras
    pre: bool
    line: int

    def pinned(self, version: str) -> str:
        """The pin with the version in place of the template."""
        return self.written[: len(self.written) - (self.end - self.start)] + version


def canonical_name(package: str) -> str:
    """A distribution name as indexes compare them (PEP 503): `Azure_ML.core` and `azure-ml-core` are one."""
    return re.sub(r"[-_.]+", "-", package).lower()


def image_sites(text: str) -> list[ImageSite]:
    """Every `{{latest-image-tag[:REGEX]}}` of a Dockerfile outside comment lines, in order."""
    sites = []
    for match in IMAGE_TEMPLATE.finditer(text):
        if _on_comment_line(text, match.start()):
            continue
        begin, finish = _word_bounds(text, match.start(), match.end())
        sites.append(ImageSite(start=match.start(), end=match.end(), template=match.group(),
                               pattern=template_pattern(match), token=text[begin:finish].strip(_QUOTES),
                               line=_line_of(text, match.start())))
    return sites


def package_sites(text: str, *, where: str) -> list[PackageSite]:
    """Every `{{latest-pypi-version[:pre]}}` of a text file outside comment lines, in order. One that follows no
    package pin, or has a flag other than `pre`, raises BuildFailed naming `where` and its line."""
    sites = []
    pins = {match.start("template"): match for match in PYPI_PIN.finditer(text)}
    for found in ANY_PYPI_TEMPLATE.finditer(text):
        if _on_comment_line(text, found.start()):
            continue
        line = _line_of(text, found.start())
        pin = pins.get(found.start())
        if pin is None:
            raise BuildFailed(f"line {line}: {found.group()} must follow a package pin such as "
                              "'name=={{latest-pypi-version}}'", where=where)
        flags = pin.group("flags")
        if flags not in (None, PRE):
            raise BuildFailed(f"line {line}: {found.group()} has an unknown flag '{flags}' (only '{PRE}' is known)",
                              where=where)
        sites.append(PackageSite(start=pin.start("template"), end=pin.end("template"), written=pin.group(),
                                 package=pin.group("name"), pre=flags == PRE, line=line))
    return sites


def replaced(text: str, replacements: Iterable[tuple[int, int, str]]) -> str:
    """`text` with each (start, end) span replaced by its value; spans must not overlap."""
    out, at = [], 0
    for start, end, value in sorted(replacements):
        if start < at:
            raise ValueError(f"overlapping replacements at {start}")
        out += [text[at:start], value]
        at = end
    return "".join([*out, text[at:]])


def with_tag(text: str, template: str, tag: str) -> str:
    """An image reference as written with its template replaced by the tag it resolved to."""
    return text.replace(template, tag, 1)


def resolution_line(written: str, resolved: str) -> str:
    """The build log's line for one resolution (`written` -> `resolved`, as the resolver maps them)."""
    image = IMAGE_TEMPLATE.search(written)
    if image is not None:
        return f"envhub: {image.group()} in FROM {written} resolved to {resolved}"
    package = ANY_PYPI_TEMPLATE.search(written)
    template = package.group() if package is not None else "template"
    return f"envhub: {template} in {written} resolved to {resolved}"


class OverlayContext:
    """A build context with some files replaced: those are served from memory (the manifest's size and sha256
    follow their new bytes), every other file passes through from the context underneath untouched."""

    def __init__(self, base: ContextSource, changed: Mapping[str, bytes]) -> None:
        self.base = base
        self._changed = dict(changed)
        manifest = base.manifest
        files = [_entry(entry.path, self._changed[entry.path], entry.executable) if entry.path in self._changed
                 else entry for entry in manifest.files]
        known = manifest.by_path
        files += [_entry(path, data, False) for path, data in self._changed.items() if path not in known]
        self._manifest = ContextManifest.of(files, manifest.dirs)

    @property
    def manifest(self) -> ContextManifest:
        """The manifest, changed files' entries made anew."""
        return self._manifest

    @property
    def changed(self) -> frozenset[str]:
        """The paths served from memory."""
        return frozenset(self._changed)

    def open(self, rel: str) -> BinaryIO:
        """A member for reading."""
        data = self._changed.get(rel)
        return self.base.open(rel) if data is None else io.BytesIO(data)

    def read_text(self, rel: str) -> str | None:
        """A member as text, or None when absent."""
        data = self._changed.get(rel)
        return self.base.read_text(rel) if data is None else data.decode()


def _entry(path: str, data: bytes, executable: bool) -> FileEntry:
    return FileEntry(path=path, executable=executable, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _on_comment_line(text: str, at: int) -> bool:
    return text[text.rfind("\n", 0, at) + 1:at].lstrip().startswith("#")


def _line_of(text: str, at: int) -> int:
    return text.count("\n", 0, at) + 1


def _word_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return start, end
