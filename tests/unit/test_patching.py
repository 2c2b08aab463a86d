"""What a scan concludes from the facts it gathered, one base use at a time (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.patching import base_use, conclude
from shared.domain.scans import FindingType, RefFacts

NOW = datetime(2024, 1, 15, tzinfo=UTC)


@pytest.mark.parametrize(("text", "repository", "reference", "mutable"), [
    ("python:3.11-slim", "docker.io/library/python", "3.11-slim", True),
    ("python", "docker.io/library/python", "", True),
    ("reg:5000/team/base:latest", "reg:5000/team/base", "latest", True),
    ("mcr.microsoft.com/azureml/base:20230620.v1", "mcr.microsoft.com/azureml/base", "20230620.v1", False),
    ("mcr.microsoft.com/azureml/base:{{latest-image-tag}}", "mcr.microsoft.com/azureml/base",
     "{{latest-image-tag}}", True),
    ("nvcr.io/nvidia/pytorch:23.10-py3", "nvcr.io/nvidia/pytorch", "23.10-py3", False),
])
def test_where_a_base_points(text: str, repository: str, reference: str, mutable: bool) -> None:
    use = base_use(text, default_registry="docker.io")
    assert use is not None and (use.repository, use.reference, use.mutable) == (repository, reference, mutable)


@pytest.mark.parametrize("text", ["python@sha256:" + "a" * 64, "{{latest-image-tag}}/x:1", "not a ref"])
def test_digest_pinned_and_odd_references_are_not_watched(text: str) -> None:
    assert base_use(text, default_registry="docker.io") is None




def test_a_mutable_base_moved_only_when_its_digest_changed_since_the_build() -> None:
    moving = base_use("python:3.11-slim", default_registry="docker.io")
    assert moving is not None
    assert conclude(moving, RefFacts(digest="sha256:new"), "sha256:new", NOW) is None
    assert conclude(moving, RefFacts(digest="sha256:new"), None, NOW) is None  # never built: nothing stale
    moved = conclude(moving, RefFacts(digest="sha256:new"), "sha256:old", NOW)
    assert moved is not None and (moved.type, moved.current, moved.available) == \
        (FindingType.BASE_MOVED, "sha256:old", "sha256:new")


def test_a_pinned_base_has_a_patch_overdue_after_thirty_days() -> None:
    pinned = base_use("mcr.microsoft.com/azureml/base:20230620.v1", default_registry="docker.io")
    assert pinned is not None
    assert conclude(pinned, RefFacts(), None, NOW) is None  # no newer tag
    fresh = conclude(pinned, RefFacts(newer_tag="20240101.v1", newer_created=NOW - timedelta(days=30)), None, NOW)
    stale = conclude(pinned, RefFacts(newer_tag="20231201.v1", newer_created=NOW - timedelta(days=31)), None, NOW)
    unknown = conclude(pinned, RefFacts(newer_tag="20231201.v1"), None, NOW)
    assert fresh is not None and fresh.type is FindingType.PATCH_AVAILABLE and not fresh.overdue
    assert stale is not None and stale.overdue and stale.available == "20231201.v1"
    assert unknown is not None and not unknown.overdue  # no date at all: never called overdue


def test_missing_and_failing() -> None:
    pinned = base_use("reg/x:1.0.0", default_registry="docker.io")
    assert pinned is not None
    gone = conclude(pinned, RefFacts(exists=False), None, NOW)
    assert gone is not None and gone.type is FindingType.BASE_MISSING and "tag '1.0.0'" in (gone.detail or "")
    assert conclude(pinned, None, None, NOW) is None  # the registry failed: reported on the scan, not a finding
