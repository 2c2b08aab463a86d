"""Base-image tag schemes: parsing, mutability, ordering within lines, `{{latest-image-tag}}` and its template."""

from __future__ import annotations

import re
from datetime import date

import pytest

from shared.domain.tag_schemes import natural_key
from shared.domain.tags import (
    TEMPLATE,
    Scheme,
    TagVersion,
    is_mutable,
    latest_image_tag,
    newer_in_line,
    newest_matching,
    parse_tag,
    template_pattern,
)
from tests.support import corpus

D, B, S, N, R = Scheme.DATED, Scheme.BIWEEKLY, Scheme.SEMVER, Scheme.NVCR, Scheme.REGEX
BIWEEKLY_RE = r"biweekly\.\d{6}\.\d{1}.*"  # as the curated ACPT Dockerfiles write it
DATED_RE = r"\d{8}\.v\d+"

# tag -> (scheme, line, key, floating, released); the tags from the corpus are marked.
PARSED: dict[str, tuple[Scheme, tuple[object, ...], tuple[int, ...], bool, date | None]] = {
    "20230620.v1": (D, (), (20230620, 1, 0), False, date(2023, 6, 20)),
    "20240105.v12": (D, (), (20240105, 12, 0), False, date(2024, 1, 5)),
    "20250310.v1": (D, (), (20250310, 1, 0), False, date(2025, 3, 10)),  # corpus
    "20240229.v1": (D, (), (20240229, 1, 0), False, date(2024, 2, 29)),  # a leap day
    "20230620.v01": (D, (), (20230620, 1, 0), False, date(2023, 6, 20)),
    "20230620.v1-2": (D, (), (20230620, 1, 2), False, date(2023, 6, 20)),
    "20230620.v1-patched": (D, (), (20230620, 1, 0), True, date(2023, 6, 20)),
    "biweekly.202310.2": (B, (), (202310, 2, 0), False, date(2023, 10, 1)),
    "biweekly.202301.2": (B, (), (202301, 2, 0), False, date(2023, 1, 1)),  # corpus
    "biweekly.202401.10": (B, (), (202401, 10, 0), False, date(2024, 1, 1)),
    "biweekly.202310.2-1": (B, (), (202310, 2, 1), False, date(2023, 10, 1)),
    "biweekly.202310.2-patched": (B, (), (202310, 2, 0), True, date(2023, 10, 1)),
    "3.11.7": (S, (3, 11, ""), (3, 11, 7, 0), False, None),
    "3.8.13": (S, (3, 8, ""), (3, 8, 13, 0), False, None),  # corpus
    "v1.2.3": (S, (1, 2, ""), (1, 2, 3, 0), False, None),
    "3.11.7-slim": (S, (3, 11, "slim"), (3, 11, 7, 0), False, None),
    "3.11.7-slim-bookworm": (S, (3, 11, "slim-bookworm"), (3, 11, 7, 0), False, None),
    "1.2.3-alpine3.19": (S, (1, 2, "alpine3.19"), (1, 2, 3, 0), False, None),
    "1.2.3-rc_1": (S, (1, 2, "rc_1"), (1, 2, 3, 0), False, None),
    "12.8.1-cudnn-devel-ubuntu22.04": (S, (12, 8, "cudnn-devel-ubuntu22.04"), (12, 8, 1, 0), False, None),  # corpus
    "12.3.2-cudnn9-devel-ubuntu22.04": (S, (12, 3, "cudnn9-devel-ubuntu22.04"), (12, 3, 2, 0), False, None),
    "3.11.7-1": (S, (3, 11, ""), (3, 11, 7, 1), False, None),  # ACR patch 1 of 3.11.7, not a suffix "1"
    "3.11.7-slim-1": (S, (3, 11, "slim"), (3, 11, 7, 1), False, None),  # base 3.11.7-slim, patch 1
    "3.11.7-slim-12": (S, (3, 11, "slim"), (3, 11, 7, 12), False, None),
    "3.11.7-slim-patched": (S, (3, 11, "slim"), (3, 11, 7, 0), True, None),  # not a suffix "slim-patched"
    "3.11": (S, (3, 11, ""), (3, 11, 0), True, None),  # corpus (devcontainers/python:3.11)
    "v3.11": (S, (3, 11, ""), (3, 11, 0), True, None),
    "3.11-slim": (S, (3, 11, "slim"), (3, 11, 0), True, None),
    "3": (S, (3, None, ""), (3, 0), True, None),
    "3-slim": (S, (3, None, "slim"), (3, 0), True, None),
    "3.11-1": (S, (3, 11, ""), (3, 11, 1), True, None),  # a patch of a floating tag still floats
    # NVIDIA's YY.MM-suffix against semver's floating X.Y-suffix: two-digit YY >= 17, two-digit MM 01..12.
    "23.10-py3": (N, ("py3",), (23, 10, 0), False, date(2023, 10, 1)),
    "24.01-py3": (N, ("py3",), (24, 1, 0), False, date(2024, 1, 1)),
    "24.01-tf2-py3": (N, ("tf2-py3",), (24, 1, 0), False, date(2024, 1, 1)),
    "22.02-py3": (N, ("py3",), (22, 2, 0), False, date(2022, 2, 1)),  # corpus (nvcr.io/nvidia/pytorch)
    "17.01-py3": (N, ("py3",), (17, 1, 0), False, date(2017, 1, 1)),
    "23.10-py3-igpu": (N, ("py3-igpu",), (23, 10, 0), False, date(2023, 10, 1)),
    "23.10-py3-1": (N, ("py3",), (23, 10, 1), False, date(2023, 10, 1)),
    "23.10-py3-patched": (N, ("py3",), (23, 10, 0), True, date(2023, 10, 1)),
    "16.04-py3": (S, (16, 4, "py3"), (16, 4, 0), True, None),  # before 2017: not NVIDIA's
    "23.1-py3": (S, (23, 1, "py3"), (23, 1, 0), True, None),  # one-digit month
    "23.13-py3": (S, (23, 13, "py3"), (23, 13, 0), True, None),  # no month 13
    "23.00-py3": (S, (23, 0, "py3"), (23, 0, 0), True, None),  # no month 0
    "123.10-py3": (S, (123, 10, "py3"), (123, 10, 0), True, None),  # three-digit year
    "22.04": (S, (22, 4, ""), (22, 4, 0), True, None),  # no suffix: Ubuntu's floating release tag
}

UNKNOWN = [
    "latest", "latest-patched", "latest-1", "", "-1", "-patched", "bookworm", "ubuntu22.04", "slim-3.11",
    "20231341.v1", "20231301.v1", "20230229.v1", "00000101.v1",  # days not in the calendar
    "2023062.v1", "202306200.v1", "20230620.V1", "20230620v1", "20230620.v", "20230620.v1.1", "20230620.v1-1-2",
    "biweekly.202313.1", "biweekly.202300.1", "biweekly.202310", "biweekly.20231.1", "Biweekly.202310.2",
    "3.11.7.1", "3.11.7-", "3.11.7-1-2", "3.11.7--slim", "3.11.7-slim!", "3.11.7_slim", "V1.2.3", "vv1.2.3",
    "\u0662\u0660\u0662\u0663\u0660\u0666\u0662\u0660.v1", "3.\u0661\u0661.7",  # Arabic-Indic digits
    "sha256:" + "a" * 64,
]


@pytest.mark.parametrize(("tag", "expected"), PARSED.items(), ids=list(PARSED))
def test_parse(tag: str, expected: tuple[Scheme, tuple[object, ...], tuple[int, ...], bool, date | None]) -> None:
    scheme, line, key, floating, released = expected
    assert parse_tag(tag) == TagVersion(tag, scheme, line, key, floating, released)


@pytest.mark.parametrize("tag", UNKNOWN)
def test_unknown_tags_have_no_scheme(tag: str) -> None:
    assert parse_tag(tag) is None


def test_schemes_are_plain_strings() -> None:
    assert [str(s) for s in Scheme] == ["dated", "biweekly", "semver", "nvcr", "regex"]


MUTABILITY = {
    None: True, "": True, "latest": True, "latest-patched": True, "3.11-slim": True, "3.11": True, "3": True,
    "22.04": True, "20230620.v1-patched": True, "3.11.7-slim-patched": True, "23.10-py3-patched": True,
    "20230620.v1": False, "3.11.7-slim": False, "23.10-py3": False, "20230620.v1-2": False,
    "biweekly.202310.2": False, "3.11.7-slim-1": False, "v1.2.3": False,
    "bookworm": False, "20231341.v1": False, "latest-1": False,  # unknown: taken as pinned
}


@pytest.mark.parametrize(("tag", "mutable"), MUTABILITY.items(), ids=[repr(t) for t in MUTABILITY])
def test_mutability(tag: str | None, mutable: bool) -> None:
    assert is_mutable(tag) is mutable


# Each row is one line, oldest first: every tag must sort strictly after the one before it.
ORDERED: list[tuple[list[str], str | None]] = [
    (["20230620.v1", "20230620.v1-1", "20230620.v1-2", "20231010.v1"], None),
    (["20230620.v1", "20230620.v2", "20230620.v10", "20230621.v1", "20240101.v1"], None),
    (["20231231.v9-10", "20240101.v1"], None),
    (["biweekly.202310.2", "biweekly.202310.2-1", "biweekly.202310.10", "biweekly.202311.1", "biweekly.202401.1"],
     None),
    (["23.10-py3", "23.10-py3-1", "23.11-py3", "24.01-py3", "25.12-py3"], None),
    (["3.11.6-slim", "3.11.6-slim-1", "3.11.6-slim-2", "3.11.7-slim", "3.11.10-slim"], None),
    (["0.9.9", "0.9.10", "0.9.10-1"], None),
    (["biweekly.202310.2", "biweekly.202310.2-1", "biweekly.202310.3", "biweekly.202311.1"], BIWEEKLY_RE),
    (["build-9", "build-10", "build-10-1", "build-10a", "build-11"], r"build-\d+[a-z]?"),
    (["2023.9.x", "2023.10.a", "2023.10.b", "2024.1.a"], r"(\d+)\.(\d+)\.([a-z])"),
]


@pytest.mark.parametrize(("tags", "pattern"), ORDERED, ids=[row[0][0] for row in ORDERED])
def test_order_within_a_line(tags: list[str], pattern: str | None) -> None:
    versions = [v for v in (parse_tag(tag, pattern) for tag in tags) if v is not None and not v.floating]
    assert len(versions) == len(tags) and len({(v.scheme, v.line) for v in versions}) == 1
    keys = [v.key for v in versions]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    if versions[0].scheme in (D, R):  # the schemes newest_matching knows
        assert newest_matching(reversed(tags), pattern) == tags[::-1]
    assert newer_in_line(tags[0], tags[::-1], pattern) == tags[:0:-1]
    assert newer_in_line(tags[-1], tags, pattern) == []


PYTHON = ["3.11.7-slim", "3.12.0-slim", "4.0.0-slim", "3.11.7-alpine", "3.11.7", "3.11-slim", "3.11.8-slim-patched",
          "3.11.5-slim", "3.11.6-slim", "3.11.6-slim-1", "v3.11.9-slim", "latest", "bookworm", "20231010.v1"]
NVIDIA = ["24.01-py3", "24.01-tf2-py3", "23.09-py3", "23.10-py3-1", "24.01-py3-patched", "23.10-py3-igpu", "23.1-py3"]
MCR = ["20230620.v1", "20231010.v1", "20230101.v3", "20230620.v1-1", "20231010.v1-patched", "biweekly.202312.1",
       "3.11.7", "latest", "20231341.v1"]
NEWER: list[tuple[str, list[str], str | None, list[str]]] = [
    ("3.11.6-slim", PYTHON, None, ["v3.11.9-slim", "3.11.7-slim", "3.11.6-slim-1"]),
    ("3.11.6-slim-1", PYTHON, None, ["v3.11.9-slim", "3.11.7-slim"]),
    ("3.11.7", PYTHON, None, []),  # its line (3, 11, "") has nothing newer: never 3.12, 4.0 or another suffix
    ("3.11.7-alpine", PYTHON, None, []),
    ("3.11.9-slim", PYTHON, None, []),  # v3.11.9-slim is the same version, not a newer one
    ("23.10-py3", NVIDIA, None, ["24.01-py3", "23.10-py3-1"]),
    ("24.01-tf2-py3", NVIDIA, None, []),
    ("20230620.v1", MCR, None, ["20231010.v1", "20230620.v1-1"]),
    # With a pattern the pattern decides: 20231341.v1 is no date, but it is `\d{8}\.v\d+`.
    ("20230620.v1", MCR, DATED_RE, ["20231341.v1", "20231010.v1", "20230620.v1-1"]),
    ("biweekly.202311.1", [*MCR, "biweekly.202311.1-1"], None, ["biweekly.202312.1", "biweekly.202311.1-1"]),
    # A mutable or unknown current has no line to move along.
    ("latest", MCR, None, []),
    ("latest", MCR, ".*", []),
    ("3.11-slim", PYTHON, None, []),
    ("3.11-slim", PYTHON, r"3\.11.*", []),  # still floating when a pattern matches it
    ("20231010.v1-patched", MCR, None, []),
    ("bookworm", PYTHON, None, []),
    ("20231341.v1", MCR, None, []),
    ("3.11.7", PYTHON, DATED_RE, []),  # a pattern it does not match
]


@pytest.mark.parametrize(("current", "tags", "pattern", "expected"), NEWER, ids=[f"{r[0]}~{r[2]}" for r in NEWER])
def test_newer_in_line(current: str, tags: list[str], pattern: str | None, expected: list[str]) -> None:
    assert newer_in_line(current, tags, pattern) == expected


def test_newer_in_line_reports_a_listed_twice_tag_once_and_takes_any_iterable() -> None:
    tags = iter(["20231010.v1", "20231010.v1", "20230620.v2"])
    assert newer_in_line("20230620.v1", tags) == ["20231010.v1", "20230620.v2"]


def test_same_version_spelt_twice_is_ordered_by_tag_whatever_the_listing() -> None:
    assert newer_in_line("1.2.3", ["1.2.4", "v1.2.4"]) == newer_in_line("1.2.3", ["v1.2.4", "1.2.4"])


REGEX: list[tuple[str, str, tuple[int, ...] | None]] = [
    (DATED_RE, "20230620.v1", (*natural_key("20230620.v1"), 0)),
    (DATED_RE, "20230620.v1-3", (*natural_key("20230620.v1"), 3)),  # base matches: ACR patch 3
    (r"\d{8}\.v\d+-\d+", "20230620.v1-3", (*natural_key("20230620.v1-3"), 0)),  # base does not: a plain match
    (r"(\d{8})\.v(\d+)", "20230620.v12", (1, 20230620, 0, 1, 12, 0, 0)),
    (r"(?P<day>\d{8})\.v(?P<n>\d+)", "20230620.v12", (1, 20230620, 0, 1, 12, 0, 0)),
    (r"(?:\d{8})\.v(\d+)", "20230620.v12", (1, 12, 0, 0)),  # a non-capturing group is no group
    (r"([a-z]+)-(\d+)", "rc-7", (2, ord("r"), 2, ord("c"), 0, 1, 7, 0, 0)),
    (r"r(\d+)(-dev)?", "r5", (1, 5, 0, 0, 0)),  # an unmatched group reads as empty
    (r"\d+", "1234", None),  # floating, as semver's X is, whatever the pattern: checked below
    (BIWEEKLY_RE, "biweekly.202310.2-patched", None),  # floating: checked below
    (DATED_RE, "20230620", None),  # matched in full, not searched
    (DATED_RE, "x20230620.v1", None),
    (r"\d{8}", "20230620.v1", None),
    (".*", "latest", None),  # latest is never a version
    (".*", "latest-patched", None),
]


@pytest.mark.parametrize(("pattern", "tag", "key"), REGEX, ids=[f"{r[0]}~{r[1]}" for r in REGEX])
def test_regex_scheme(pattern: str, tag: str, key: tuple[int, ...] | None) -> None:
    version = parse_tag(tag, pattern)
    if key is None:
        assert version is None or version.floating
        return
    assert version == TagVersion(tag, R, (pattern,), key, False, None)


def test_regex_scheme_keeps_acr_and_built_in_floating_tags_floating() -> None:
    assert parse_tag("biweekly.202310.2-patched", BIWEEKLY_RE) == TagVersion(
        "biweekly.202310.2-patched", R, (BIWEEKLY_RE,), (*natural_key("biweekly.202310.2"), 0), True, None)
    for tag, pattern in [("3.11-slim", r"3\.11.*"), ("1234", r"\d+"), ("22.04", r"\d+\.\d+")]:
        version = parse_tag(tag, pattern)
        assert version is not None and version.scheme is R and version.floating


def test_with_a_pattern_only_the_regex_scheme_is_tried() -> None:
    assert parse_tag("20230620.v1", r"biweekly\..*") is None
    version = parse_tag("3.11.7", r"\d+\.\d+\.\d+")
    assert version is not None and version.scheme is R


def test_a_bad_pattern_is_an_error() -> None:
    with pytest.raises(re.error):
        parse_tag("20230620.v1", "(unclosed")


def test_natural_key_orders_digit_runs_as_numbers_and_parts_end_to_end() -> None:
    words = ["a", "a1", "a2", "a10", "a10b", "ab", "b"]
    assert sorted(reversed(words), key=natural_key) == words
    assert natural_key("007") == natural_key("7")
    assert natural_key("") == (0,)


NEWEST: list[tuple[list[str], str | None, list[str]]] = [
    (MCR, None, ["20231010.v1", "20230620.v1-1", "20230620.v1", "20230101.v3"]),  # dated, pinned only
    (MCR, DATED_RE, ["20231341.v1", "20231010.v1", "20230620.v1-1", "20230620.v1", "20230101.v3"]),
    (["biweekly.202309.1", "biweekly.202310.2", "biweekly.202310.10", "biweekly.202310.2-patched", "latest",
      "biweekly.202310.2-1", "20231010.v1"], BIWEEKLY_RE,
     ["biweekly.202310.10", "biweekly.202310.2-1", "biweekly.202310.2", "biweekly.202309.1"]),
    (PYTHON, None, ["20231010.v1"]),  # its one dated tag
    (PYTHON[:-1], None, []),
    ([], None, []),
    (PYTHON, r"3\.11\.\d+-slim", ["3.11.7-slim", "3.11.6-slim-1", "3.11.6-slim", "3.11.5-slim"]),  # no v, no -patched
    (["latest"], ".*", []),
]


@pytest.mark.parametrize(("tags", "pattern", "expected"), NEWEST, ids=[str(r[1]) for r in NEWEST])
def test_newest_matching(tags: list[str], pattern: str | None, expected: list[str]) -> None:
    assert newest_matching(tags, pattern) == expected


class Registry:
    """Digests by tag, counting the questions asked."""

    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = digests
        self.asked: list[str] = []

    def digest_of(self, tag: str) -> str | None:
        self.asked.append(tag)
        return self.digests.get(tag)


TAGS = ["latest", "20230101.v1", "20231010.v1", "20230620.v1", "20231010.v1-patched", "20231010.v2", "3.11"]


def test_latest_image_tag_asks_newest_first_and_stops_at_the_first_match() -> None:
    registry = Registry({"latest": "sha256:b", "20231010.v2": "sha256:a", "20231010.v1": "sha256:b",
                         "20230620.v1": "sha256:b"})
    assert latest_image_tag(TAGS, registry.digest_of, "sha256:b") == "20231010.v1"
    assert registry.asked == ["20231010.v2", "20231010.v1"]  # never latest, a floating tag, nor older ones


def test_latest_image_tag_is_none_after_asking_every_candidate_once() -> None:
    registry = Registry({"20231010.v2": "sha256:a"})
    assert latest_image_tag(TAGS, registry.digest_of, "sha256:z") is None
    assert registry.asked == ["20231010.v2", "20231010.v1", "20230620.v1", "20230101.v1"]


def test_latest_image_tag_takes_an_acr_patch_and_a_pattern() -> None:
    registry = Registry({"20231010.v1-1": "sha256:p"})
    assert latest_image_tag([*TAGS, "20231010.v1-1"], registry.digest_of, "sha256:p") == "20231010.v1-1"
    assert registry.asked == ["20231010.v2", "20231010.v1-1"]
    registry = Registry({"biweekly.202310.1": "sha256:c"})
    tags = ["biweekly.202310.1", "biweekly.202310.2", "biweekly.202309.3", "20231010.v1"]
    assert latest_image_tag(tags, registry.digest_of, "sha256:c", BIWEEKLY_RE) == "biweekly.202310.1"
    assert registry.asked == ["biweekly.202310.2", "biweekly.202310.1"]


def test_latest_image_tag_asks_nothing_without_candidates() -> None:
    registry = Registry({})
    assert latest_image_tag(["latest", "3.11"], registry.digest_of, "sha256:a") is None
    assert registry.asked == []


# Real Dockerfile lines (the curated corpus) and the REGEX each template carries.
TEMPLATED: list[tuple[str, list[str | None]]] = [
    ("FROM mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:{{latest-image-tag}}", [None]),
    ("FROM mcr.microsoft.com/azureml/openmpi5.0-cuda12.4-ubuntu22.04:{{latest-image-tag}}", [None]),
    ("FROM mcr.microsoft.com/azureml/inference-base-2204:{{latest-image-tag}}", [None]),
    ("FROM mcr.microsoft.com/aifx/acpt/stable-ubuntu2204-cu126-py310-torch280:"
     r"{{latest-image-tag:biweekly\.\d{6}\.\d{1}.*}}", [BIWEEKLY_RE]),
    (r"FROM x:{{latest-image-tag:\d{8}\.v\d+}}", [DATED_RE]),
    (r"FROM x:{{latest-image-tag:\d{8}}} AS base", [r"\d{8}"]),  # a quantifier right before the closing braces
    (r"FROM x:{{latest-image-tag:\d{2,}\.\{v\}}}", [r"\d{2,}\.\{v\}"]),  # escaped braces
    (r"FROM a:{{latest-image-tag}} AS a", [None]),
    (r"COPY --from=a:{{latest-image-tag:v\d+}} / / # and b:{{latest-image-tag}}", [r"v\d+", None]),
    ("image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:{{latest-image-tag}}\n", [None]),
    ("RUN pip install 'azureml-core=={{latest-pypi-version}}'", []),
    ("FROM x:{{latest-image-tag:}}", []),  # an empty REGEX is no template
    ("FROM x:{{latest-image-tag:a b}}", []),  # nor one with a space
    ("FROM x:{{latest-image-tag:}", []),
    ("FROM x:{{ latest-image-tag }}", []),
    ("FROM x:20230620.v1", []),
]


@pytest.mark.parametrize(("text", "patterns"), TEMPLATED, ids=[t[0][-40:] for t in TEMPLATED])
def test_template(text: str, patterns: list[str | None]) -> None:
    matches = list(TEMPLATE.finditer(text))
    assert [template_pattern(m) for m in matches] == patterns
    for match in matches:
        assert match.group(0).startswith("{{latest-image-tag") and match.group(0).endswith("}}")


def test_template_patterns_read_the_tags_they_name() -> None:
    (match,) = TEMPLATE.finditer(r"FROM x:{{latest-image-tag:biweekly\.\d{6}\.\d{1}.*}}")
    pattern = template_pattern(match)
    assert newest_matching(["biweekly.202310.2", "biweekly.202311.1", "latest"], pattern) == [
        "biweekly.202311.1", "biweekly.202310.2"]


def test_every_template_of_the_corpus() -> None:
    texts = [p.read_text() for p in sorted(corpus().glob("curated/*/context/Dockerfile"))]
    found = [m for text in texts for m in TEMPLATE.finditer(text)]
    assert len(found) == sum(text.count("{{latest-image-tag") for text in texts) > 0
    assert {template_pattern(m) for m in found} <= {None, BIWEEKLY_RE}
    for match in found:
        re.compile(template_pattern(match) or "")
