"""The patch scan benchmark (bench/patch_scan.py) on a small data set: its request accounting is exact, both scans
finish, and the stand-in registry paginates tag lists as Distribution does."""

from __future__ import annotations

from pathlib import Path

from bench import patch_scan
from bench.registry_standin import StandInRegistry
from shared.adapters.oci_registry import OciRegistry
from shared.domain.images import ImageRef
from shared.domain.scans import ScanStatus

REPOSITORIES, TAGS, VERSIONS = 3, 10, 30  # 3 names of 10 versions, one repository each


def test_the_request_accounting_on_a_small_data_set(tmp_path: Path) -> None:
    m = patch_scan.measure(tmp_path, REPOSITORIES, TAGS, VERSIONS)
    # Versions 4-10 of each name are templated: 21 resolutions, each a tag list and two HEADs (`latest`, then the
    # newest dated tag, `.v2` of the last day, which `latest` names).
    assert m.templated == 21
    assert m.baseline == {"GET tags/list": 21, "HEAD manifests": 21 * 2}
    assert m.agree
    assert all(scan.status is ScanStatus.FINISHED and not scan.errors for scan in m.scans)
    assert 0 < sum(m.second.values()) < sum(m.first.values())
    # Each repository's 11 tags are one page, read once per scan; what immutable tags name is remembered.
    assert m.first["GET tags/list"] == m.second["GET tags/list"] == REPOSITORIES
    assert m.second["GET manifests"] == m.second["GET blobs"] == 0
    # Versions 1-2 of each name are pinned to older tags: one patch_available finding each, new only once.
    assert len(m.scans[0].findings) == len(m.scans[0].new_findings) == 2 * REPOSITORIES
    assert m.scans[1].new_findings == []
    rows = patch_scan.rows(m)
    assert [row.goal for row in rows] == [None, patch_scan.SECOND_GOAL, None]  # met at scale, not by 7 per repository
    assert rows[1].ratio == sum(m.second.values()) / 63


def test_the_stand_in_paginates_and_counts(tmp_path: Path) -> None:
    content, _ = patch_scan.dataset(1, TAGS, 0)
    (name,) = content
    with StandInRegistry(content) as registry, OciRegistry(insecure_registries={registry.host}, page_size=4) as client:
        assert client.tags(registry.host, name) == sorted(content[name])  # 11 tags: pages of 4, 4 and 3
        newest = patch_scan.history(TAGS)[-1][0]
        latest = client.head(ImageRef(registry=registry.host, repository=name, tag="latest"))
        assert latest == content[name][newest].digest
        created = client.created(ImageRef(registry=registry.host, repository=name, tag=newest))
        assert created == patch_scan.history(TAGS)[-1][1]
        assert client.head(ImageRef(registry=registry.host, repository=name, tag="19990101.v1")) is None
    assert registry.requests == {"GET tags/list": 3, "HEAD manifests": 2, "GET manifests": 1, "GET blobs": 1}
    assert sum(client.requests.values()) == registry.total
