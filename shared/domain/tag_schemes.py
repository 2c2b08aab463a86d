"""Tag schemes of base-image repositories: each reads a plain tag (no ACR patch suffix) into a version."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache

# A suffix starts with a letter, so a trailing `-<digits>` is never a suffix: it is left to ACR's patch numbers.
_SUFFIX = r"[A-Za-z][A-Za-z0-9_.-]*"
# re.ASCII: `\d` alone would also accept other scripts' digits, which no registry tag holds.
_DATED = re.compile(r"(?P<day>\d{8})\.v(?P<n>\d+)", re.ASCII)
_BIWEEKLY = re.compile(r"biweekly\.(?P<month>\d{6})\.(?P<n>\d+)", re.ASCII)
_NVCR = re.compile(rf"(?P<yy>\d{{2}})\.(?P<mm>\d{{2}})-(?P<suffix>{_SUFFIX})", re.ASCII)
_SEMVER = re.compile(
    rf"v?(?P<major>\d+)(?:\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?)?(?:-(?P<suffix>{_SUFFIX}))?", re.ASCII
)
NVCR_FIRST_YEAR = 17  # NVIDIA's registry has tagged YY.MM releases since 2017; `16.04-x` is not one of them


class Scheme(StrEnum):
    """How a repository names its immutable tags."""

    DATED = "dated"  # YYYYMMDD.vN: Microsoft's base images, patched every two weeks
    BIWEEKLY = "biweekly"  # biweekly.YYYYMM.N: Microsoft's ACPT images
    SEMVER = "semver"  # X.Y.Z[-suffix], with X.Y[-suffix] and X[-suffix] floating over them
    NVCR = "nvcr"  # YY.MM-suffix: NVIDIA's monthly releases
    REGEX = "regex"  # a caller's pattern, as `{{latest-image-tag:REGEX}}` gives it


@dataclass(frozen=True)
class TagVersion:
    """One tag as its scheme reads it; tags compare only within the same (scheme, line)."""

    tag: str
    scheme: Scheme
    line: tuple[object, ...]
    key: tuple[int, ...]  # order within the line; the ACR patch number is the last element (0 when none)
    floating: bool  # a mutable tag that moves over the line's pinned tags (3.11-slim, <tag>-patched)
    released: date | None  # the date the tag carries, if its scheme has one


def plain_tag(tag: str, pattern: str | None = None) -> TagVersion | None:
    """`tag` read by the first scheme that recognises it, with `key` not yet holding an ACR patch number.

    With `pattern`, only the regex scheme is tried. NVCR is tried before SEMVER, so `23.10-py3` is NVIDIA's.
    """
    if pattern is not None:
        return regex(tag, pattern)
    for read in (dated, biweekly, nvcr, semver):
        if (version := read(tag)) is not None:
            return version
    return None


def dated(tag: str) -> TagVersion | None:
    """`20230620.v1`: ordered by (date, N); a day that is not in the calendar makes no dated tag."""
    if (m := _DATED.fullmatch(tag)) is None or (day := _calendar(m["day"][:4], m["day"][4:6], m["day"][6:])) is None:
        return None
    return TagVersion(tag, Scheme.DATED, (), (int(m["day"]), int(m["n"])), False, day)


def biweekly(tag: str) -> TagVersion | None:
    """`biweekly.202310.2`: ordered by (YYYYMM, N); released is the month's first day, as the tag says no more."""
    if (m := _BIWEEKLY.fullmatch(tag)) is None or (day := _calendar(m["month"][:4], m["month"][4:], "01")) is None:
        return None
    return TagVersion(tag, Scheme.BIWEEKLY, (), (int(m["month"]), int(m["n"])), False, day)


def nvcr(tag: str) -> TagVersion | None:
    """`23.10-py3`: a two-digit year from 17 on, a two-digit month 01..12 and a suffix, which is the line.

    Anything else of the form X.Y-suffix (`3.11-slim`, `16.04-x`, `23.1-py3`, `23.13-py3`) is a floating semver
    tag, and so is `22.04` without a suffix (Ubuntu's floating release tag).
    """
    m = _NVCR.fullmatch(tag)
    if m is None or int(m["yy"]) < NVCR_FIRST_YEAR or (day := _calendar(f"20{m['yy']}", m["mm"], "01")) is None:
        return None
    return TagVersion(tag, Scheme.NVCR, (m["suffix"],), (int(m["yy"]), int(m["mm"])), False, day)


def semver(tag: str) -> TagVersion | None:
    """`3.11.7-slim` is pinned in the line (3, 11, "slim"); `3.11-slim` floats over it, `3-slim` over (3, None, "slim").

    A leading `v` is allowed and ignored; the suffix (empty when none) is part of the line, so `-slim` never
    moves to `-alpine`, nor 3.11 to 3.12.
    """
    if (m := _SEMVER.fullmatch(tag)) is None:
        return None
    minor = None if m["minor"] is None else int(m["minor"])
    numbers = [int(part) for part in (m["major"], m["minor"], m["patch"]) if part is not None]
    line = (int(m["major"]), minor, m["suffix"] or "")
    return TagVersion(tag, Scheme.SEMVER, line, tuple(numbers), m["patch"] is None, None)


def regex(tag: str, pattern: str) -> TagVersion | None:
    """`tag` if `pattern` matches all of it; the line is the pattern, the order its groups' (else the tag's).

    Each group (or the whole tag, without groups) is compared naturally: runs of digits as numbers.
    Raises re.error for a pattern that is not a regex.
    """
    if (m := _compiled(pattern).fullmatch(tag)) is None:
        return None
    parts = m.groups(default="") if m.re.groups else (tag,)
    return TagVersion(tag, Scheme.REGEX, (pattern,), tuple(n for part in parts for n in natural_key(part)), False, None)


def natural_key(text: str) -> tuple[int, ...]:
    """A key that sorts `text` naturally, as integers only: a run of digits is (1, value), any other character
    (2, code point), and the end 0, so that keys of parts laid end to end still compare part by part."""
    key: list[int] = []
    for digits, char in re.findall(r"(\d+)|(.)", text, re.ASCII | re.DOTALL):
        key += (1, int(digits)) if digits else (2, ord(char))
    return (*key, 0)


@lru_cache(maxsize=128)
def _compiled(pattern: str) -> re.Pattern[str]:
    # A scan reads every tag of a repository against the same few patterns.
    return re.compile(pattern)


def _calendar(year: str, month: str, day: str) -> date | None:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:  # 20231341: month 13 or day 41 is no date, so no dated tag
        return None
