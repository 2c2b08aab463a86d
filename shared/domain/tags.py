"""Base-image tags: which are mutable, which are newer in their line, and what `{{latest-image-tag}}` pins."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from shared.domain.tag_schemes import Scheme, TagVersion, plain_tag

__all__ = [
    "TEMPLATE",
    "Scheme",
    "TagVersion",
    "is_mutable",
    "latest_image_tag",
    "newer_in_line",
    "newest_matching",
    "parse_tag",
    "template_pattern",
]

LATEST = "latest"
PATCHED = "-patched"  # ACR continuous patching's floating tag: it moves to the newest `<tag>-N`
_INCREMENT = re.compile(r"(?P<base>.+)-(?P<n>[0-9]+)")  # ACR's `<tag>-1`, `<tag>-2`...: the last `-<digits>`

# `{{latest-image-tag}}` or `{{latest-image-tag:REGEX}}`. A REGEX may hold `{6}`-style quantifiers and
# escapes, so it runs to the `}}` that closes the template, not to the first `}`; it never holds whitespace,
# which would end the image reference around it.
TEMPLATE = re.compile(
    r"\{\{latest-image-tag(?::(?P<regex>(?:\\\S|\{[0-9]*(?:,[0-9]*)?\}|[^{}\\\s])+))?\}\}"
)


@functools.lru_cache(maxsize=1 << 16)  # a scan compares each tag of a repository with every pinned tag in use
def parse_tag(tag: str, pattern: str | None = None) -> TagVersion | None:
    """`tag`'s scheme, line and order, or None for a tag of no scheme.

    With `pattern`, only the regex scheme (plus ACR suffixes) is tried. An ACR suffix is read first: `<tag>-N` is
    patch N of `<tag>` and `<tag>-patched` floats over them, whenever `<tag>` itself parses (so `3.11.7-slim-1`
    is patch 1 of `3.11.7-slim`, and `3.11.7-1` patch 1 of `3.11.7`); otherwise the whole tag is read plainly.
    `latest` (and its ACR forms) is never a version.
    """
    readings = list(_readings(tag))
    if any(base == LATEST for base, _, _ in readings):
        return None  # `latest` is no version, even when a caller's pattern would match it
    for base, patch, patched in readings:
        if (version := plain_tag(base, pattern)) is not None:
            # Mutability belongs to the tag, not to the pattern: `3.11-slim` floats whatever regex matched it.
            floating = version.floating or patched or (pattern is not None and is_mutable(tag))
            return replace(version, tag=tag, key=(*version.key, patch), floating=floating)
    return None


def is_mutable(tag: str | None) -> bool:
    """No tag, `latest` and floating tags move; everything else, unknown tags included, is taken as pinned."""
    if not tag or tag in (LATEST, LATEST + PATCHED):
        return True
    version = parse_tag(tag)
    return version is not None and version.floating


def newer_in_line(current: str, tags: Iterable[str], pattern: str | None = None) -> list[str]:
    """Tags strictly newer than `current` in its scheme and line, newest first; [] for a mutable or unknown current."""
    now = parse_tag(current, pattern)
    if now is None or now.floating:
        return []
    return _newest_first(
        version
        for version in _parsed(tags, pattern)
        if (version.scheme, version.line) == (now.scheme, now.line) and not version.floating and version.key > now.key
    )


def newest_matching(tags: Iterable[str], pattern: str | None = None) -> list[str]:
    """Tags of the pattern's scheme (default: the dated scheme, as Microsoft's `{{latest-image-tag}}` does), pinned
    only, newest first."""
    scheme = Scheme.DATED if pattern is None else Scheme.REGEX
    return _newest_first(v for v in _parsed(tags, pattern) if v.scheme is scheme and not v.floating)


def latest_image_tag(
    tags: Iterable[str], digest_of: Callable[[str], str | None], latest_digest: str, pattern: str | None = None
) -> str | None:
    """`{{latest-image-tag[:REGEX]}}`: the newest tag matching the pattern (default dated scheme) whose digest equals
    `latest`'s, asking `digest_of` newest-first and stopping at the first match (as Microsoft's release tooling does);
    None when none matches."""
    # Each digest is a registry round trip: the newest tag is nearly always the one, so ask lazily.
    return next((tag for tag in newest_matching(tags, pattern) if digest_of(tag) == latest_digest), None)


def template_pattern(match: re.Match[str]) -> str | None:
    """The REGEX of a TEMPLATE match, or None for a plain `{{latest-image-tag}}`."""
    regex: str | None = match.group("regex")
    return regex


def _readings(tag: str) -> Iterator[tuple[str, int, bool]]:
    # (base, ACR patch number, floating) to try in turn: the ACR reading before the plain one.
    if tag.endswith(PATCHED):
        yield tag.removesuffix(PATCHED), 0, True
    elif (m := _INCREMENT.fullmatch(tag)) is not None:
        yield m["base"], int(m["n"]), False
    yield tag, 0, False


def _parsed(tags: Iterable[str], pattern: str | None) -> Iterator[TagVersion]:
    for tag in dict.fromkeys(tags):  # a registry may list a tag twice; report it once
        if (version := parse_tag(tag, pattern)) is not None:
            yield version


def _newest_first(versions: Iterable[TagVersion]) -> list[str]:
    # Equal keys (`v1.2.3` and `1.2.3`) are ordered by tag so the answer never depends on the registry's order.
    return [v.tag for v in sorted(versions, key=lambda v: (v.key, v.tag), reverse=True)]
