"""The patch scan against a real Distribution registry seeded with tag histories in every scheme, a proxy that
fails for one repository, and an injected clock: the exact findings, rebuilds and redeploy flags."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.webhook import WebhookNotifier
from shared.bootstrap import Services, build_services
from shared.domain.builds import BuildStatus
from shared.domain.outbound import RefusedRegistry
from shared.domain.scans import Scan, ScanStatus
from shared.local_stack import scheduler_for, worker_for
from shared.settings import Settings
from tests.fakes.builder import FakeBuilder
from tests.faulty_proxy import failing_for
from tests.integration.test_api_contexts_jobs import member, tar_gz
from tests.registry_seed import copy_tag, delete_tag, local_registry, push_history, push_image

pytestmark = pytest.mark.integration
NOW = datetime(2024, 1, 15, 12, tzinfo=UTC)
WS = "w"
CONDA = {"dependencies": ["python=3.11"]}


def day(year: int, month: int, date: int) -> datetime:
    return datetime(year, month, date, tzinfo=UTC)


@dataclass
class Seeded:
    """The registry, the failing proxy in front of it, and digests of the tags the tests name."""

    host: str
    proxy: str
    digests: dict[str, str]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with local_registry(tmp_path_factory.mktemp("reg")) as host, failing_for(host, "/broken/") as proxy:
        digests: dict[str, str] = {}
        digests |= {f"base:{t}": d for t, d in push_history(host, "msft/base", [
            ("20230620.v1", day(2023, 6, 20)), ("20231010.v1", day(2023, 10, 10))]).items()}
        digests["base:latest"] = copy_tag(host, "msft/base", "20231010.v1", "latest")
        digests |= {f"py:{t}": d for t, d in push_history(host, "py/python", [
            ("3.11.6-slim", day(2023, 10, 2)), ("3.11.7-slim", day(2023, 12, 20)), ("3.12.1-slim", day(2023, 12, 21)),
            ("3.11.7-alpine", day(2023, 12, 22))]).items()}
        digests["py:3.11-slim"] = copy_tag(host, "py/python", "3.11.6-slim", "3.11-slim")
        push_history(host, "bw/img", [("biweekly.202310.1", day(2023, 10, 3)), ("biweekly.202311.1", day(2023, 11, 7))])
        push_history(host, "nv/pytorch", [("23.10-py3", day(2023, 10, 20)), ("24.01-py3", day(2024, 1, 10)),
                                          ("24.01-tf2-py3", day(2024, 1, 11))])
        digests |= {f"stable:{t}": d for t, d in push_history(host, "stable/img", [("1.0.0", day(2023, 5, 1))]).items()}
        push_history(host, "gone/img", [("1.9.0", day(2023, 4, 1)), ("2.0.0", day(2023, 5, 1))])
        push_history(host, "broken/img", [("1.0.0", day(2023, 5, 1))])
        yield Seeded(host, proxy, digests)


@dataclass
class Scanning:
    """Services over the seeded registry, with a scan worker to drain the scan queue by hand."""

    services: Services
    seeded: Seeded
    records: dict[str, Any]

    def scan(self, trigger: str = "api") -> Scan:
        started = self.services.scanning.start(trigger)  # type: ignore[arg-type]
        return self.drain(started.id)

    def drain(self, scan_id: str) -> Scan:
        worker = worker_for(self.services, "scan")
        for _ in range(500):
            scan = self.services.scanning.get(scan_id)
            if scan.status is ScanStatus.FINISHED:
                return scan
            worker.run_once()
        raise AssertionError(f"scan {scan_id} did not finish")


def register(services: Services, name: str, document: dict[str, Any]) -> Any:
    return services.environments.register(workspace=WS, name=name, document=document).record


def built_on(services: Services, record: Any, base: str, digest: str) -> None:
    """Record that the environment's image was built on `base` at `digest` (as a build would)."""
    build = services.images.ensure(workspace=WS, name=record.name, version=record.version).build
    assert build is not None
    services.images.builds.update(build.model_copy(update={
        "status": BuildStatus.SUCCEEDED, "finished_at": NOW - timedelta(days=20), "base_digests": {base: digest}}))


@pytest.fixture
def scanning(seeded: Seeded, tmp_path: Path) -> Scanning:
    host = seeded.host
    settings = Settings(data_dir=tmp_path / "data", registry=host, insecure_registries=f"{host},{seeded.proxy}",
                        unqualified_registry=host, worker=False, build_check_seconds=0.01,
                        build_check_max_seconds=0.02, allowed_registries=seeded.proxy)  # another registry
    services = build_services(settings, builder=FakeBuilder({}))
    services.scanning.clock = services.scanning.concluder.clock = lambda: NOW
    records: dict[str, Any] = {}
    user_images = {"pinned-dated": "msft/base:20230620.v1", "semver": "py/python:3.11.6-slim",
                   "biweekly": "bw/img:biweekly.202310.1", "nvcr": "nv/pytorch:23.10-py3", "stable": "stable/img:1.0.0"}
    for name, image in user_images.items():
        records[name] = register(services, name, {"image": f"{host}/{image}"})
    records["floating"] = register(services, "floating", {"image": f"{host}/py/python:3.11-slim", "conda_file": CONDA})
    built_on(services, records["floating"], f"{host}/py/python:3.11-slim", seeded.digests["py:3.11-slim"])
    records["unchanged"] = register(services, "unchanged", {"image": f"{host}/msft/base:latest", "conda_file": CONDA})
    built_on(services, records["unchanged"], f"{host}/msft/base:latest", seeded.digests["base:latest"])
    templated = f"{host}/msft/base:{{{{latest-image-tag}}}}"
    context = services.contexts.upload(_archive(f"FROM {templated}\nLABEL app=templated\n"))
    records["templated"] = register(services, "templated", {"build": {"context": context.digest}})
    built_on(services, records["templated"], templated, seeded.digests["base:latest"])
    records["broken"] = register(services, "broken", {"image": f"{seeded.proxy}/broken/img:1.0.0"})
    return Scanning(services, seeded, records)


def _archive(dockerfile: str) -> Any:
    import io

    return io.BytesIO(tar_gz([member("Dockerfile", dockerfile.encode())]))


def findings_of(scan: Scan) -> dict[str, tuple[str, str | None, bool]]:
    return {f["environment"]: (f["type"], f["available"], f["overdue"]) for f in scan.findings}


def test_a_scan_finds_moved_bases_patches_and_missing_tags(scanning: Scanning, seeded: Seeded) -> None:
    host = seeded.host
    copy_tag(host, "py/python", "3.11.7-slim", "3.11-slim")  # the floating tag moves
    gone = delete_tag(host, "gone/img", "2.0.0")
    services = scanning.services
    services.environments.register(workspace=WS, name="gone", document={"image": f"{host}/gone/img:2.0.0"})
    assert gone.startswith("sha256:")

    scan = scanning.scan()
    assert scan.status is ScanStatus.FINISHED and set(scan.done) == set(scan.repositories)
    assert findings_of(scan) == {
        "pinned-dated:1": ("patch_available", "20231010.v1", True),  # 97 days old: overdue
        "semver:1": ("patch_available", "3.11.7-slim", False),  # never 3.12.1-slim or -alpine; 26 days old
        "biweekly:1": ("patch_available", "biweekly.202311.1", True),
        "nvcr:1": ("patch_available", "24.01-py3", False),  # never the -tf2-py3 line
        "floating:1": ("base_moved", seeded.digests["py:3.11.7-slim"], False),
        "gone:1": ("base_missing", None, False),
    }
    assert {f["environment"] for f in scan.findings if f["new"]} == set(findings_of(scan))
    # Nothing about the unchanged bases, the template that still resolves to latest, or the failing repository.
    assert list(scan.errors) == [f"{seeded.proxy}/broken/img"] and "500" in scan.errors[f"{seeded.proxy}/broken/img"]
    assert scan.facts[f"{host}/msft/base"]["{{latest-image-tag}}"].resolved_tag == "20231010.v1"
    patch = next(f for f in services.findings.list_findings(workspace=WS, top=50, cursor=None).items
                 if f.environment == "pinned-dated:1")
    assert patch.available_created == day(2023, 10, 10) and patch.current == "20230620.v1"
    # The moved base is rebuilt at once (auto-rebuild is on by default).
    floating = scanning.records["floating"]
    rebuild = services.images.builds.latest_for_hash(floating.description.hash)
    assert rebuild is not None and rebuild.status is BuildStatus.QUEUED


def test_a_second_unchanged_scan_keeps_the_findings_and_asks_less(scanning: Scanning, seeded: Seeded) -> None:
    registry = scanning.services.registry
    first = scanning.scan()
    asked_first = sum(registry.requests.values())  # type: ignore[attr-defined]
    second = scanning.scan()
    asked_second = sum(registry.requests.values()) - asked_first  # type: ignore[attr-defined]
    assert findings_of(second) == findings_of(first) and second.new_findings == []
    assert {f["environment"] for f in second.findings if f["new"]} == set()
    # Immutable tags' digests and creation times are remembered: only lists and mutable tags are asked again.
    assert asked_second < asked_first
    listed = scanning.services.findings.list_findings(workspace=WS, top=50, cursor=None).items
    assert len(listed) == len(findings_of(first))  # one finding each, across both scans


def test_deployments_are_flagged_for_redeploy(scanning: Scanning, seeded: Seeded) -> None:
    copy_tag(seeded.host, "py/python", "3.11.7-slim", "3.11-slim")
    deployments = scanning.services.deployments
    deployments.set(workspace=WS, name="d-floating", environment="floating:1", image_digest="sha256:" + "a" * 64)
    deployments.set(workspace=WS, name="d-current", environment="stable:1")
    deployments.set(workspace=WS, name="d-old", environment="stable:1", image_digest="sha256:" + "b" * 64)
    scan = scanning.scan()
    flagged = {d["deployment"]: d["reason"] for d in scan.redeploy}
    assert set(flagged) == {"d-floating", "d-old"}
    assert "base_moved" in flagged["d-floating"]
    assert flagged["d-old"].startswith("it runs sha256:" + "b" * 64)
    assert seeded.digests["stable:1.0.0"] in flagged["d-old"]
    assert sorted(scan.redeploys) == [f"{WS}/d-floating", f"{WS}/d-old"]
    current = deployments.get(workspace=WS, name="d-current")
    assert current.needs_redeploy is False


def test_acknowledged_and_snoozed_findings(scanning: Scanning) -> None:
    scan = scanning.scan()
    findings = scanning.services.findings
    findings.clock = lambda: NOW
    by_env = {f.environment: f for f in findings.list_findings(workspace=WS, top=50, cursor=None).items}
    findings.acknowledge(workspace=WS, finding_id=by_env["semver:1"].id)
    findings.snooze(workspace=WS, finding_id=by_env["nvcr:1"].id, until=NOW + timedelta(days=7))
    again = scanning.scan()
    assert again.new_findings == [] and scan.id != again.id
    statuses = {f.environment: f.status.value for f in findings.list_findings(workspace=WS, top=50, cursor=None).items}
    assert statuses["semver:1"] == "acknowledged" and statuses["nvcr:1"] == "snoozed"
    later = NOW + timedelta(days=8)  # the snooze is over: the next scan opens it again
    scanning.services.scanning.clock = scanning.services.scanning.concluder.clock = lambda: later
    scanning.scan()
    assert findings.get(workspace=WS, finding_id=by_env["nvcr:1"].id).status.value == "open"


def test_the_local_scheduler_runs_a_scan_on_its_schedule(scanning: Scanning) -> None:
    clock = [NOW]
    fired: list[datetime] = []
    stop = threading.Event()

    def wait(seconds: float) -> bool:  # no real sleeping: time moves when the scheduler waits
        clock[0] += timedelta(seconds=seconds)
        return stop.is_set()

    scheduler = scheduler_for(scanning.services, wait=wait, clock=lambda: clock[0])
    original = scheduler.job

    def job(fire: datetime) -> None:
        fired.append(fire)
        original(fire)
        stop.set()

    scheduler.job = job
    scheduler.run(stop)
    assert fired == [datetime(2024, 1, 29, 3, tzinfo=UTC)]  # the default: days 1, 15 and 29 at 03:00
    (latest,) = scanning.services.scanning.list_scans(top=1, cursor=None).items
    assert latest.trigger == "scheduler"
    assert scanning.drain(latest.id).status is ScanStatus.FINISHED


def test_a_moved_base_is_rebuilt_and_deployments_on_the_old_image_are_flagged(scanning: Scanning,
                                                                             seeded: Seeded) -> None:
    services, host = scanning.services, seeded.host
    floating = scanning.records["floating"]
    image = services.images.target(floating)
    old = push_image(host, image.repository, "latest", created=NOW - timedelta(days=20), marker="first build")
    builder = services.building.builder
    assert isinstance(builder, FakeBuilder)
    # The scripted builder pushes a real (layerless) image to each target, as a build would.
    builder.push = lambda target: push_image(host, target.repository, target.tag, created=NOW, marker="rebuilt")
    services.deployments.set(workspace=WS, name="d-floating", environment="floating:1")
    assert services.deployments.get(workspace=WS, name="d-floating").image_digest == old
    copy_tag(host, "py/python", "3.11.7-slim", "3.11-slim")
    first = scanning.scan()
    assert findings_of(first)["floating:1"][0] == "base_moved"
    rebuild = services.images.builds.latest_for_hash(floating.description.hash)
    assert rebuild is not None and rebuild.status is BuildStatus.QUEUED and rebuild.replaces == old
    # The rebuild runs through the build state machine although the image exists: it replaces `old`.
    worker = worker_for(services)
    for _ in range(200):
        worker.run_once()
        time.sleep(0.01)  # checks are sent 10-20 ms ahead
        done = services.images.builds.get(rebuild.id)
        if done is not None and done.status.finished:
            break
    assert done is not None and done.status is BuildStatus.SUCCEEDED and len(done.tags) == 2
    assert services.images.current_digest(floating) == done.digest != old
    flagged = {d["deployment"]: d["reason"] for d in scanning.scan().redeploy}
    assert f"it runs {old}, its environment's image is now {done.digest}" in flagged["d-floating"]


def test_registries_off_the_allowlist_are_never_asked(seeded: Seeded, tmp_path: Path) -> None:
    host = seeded.host

    def listing(allowed: str) -> Services:
        return build_services(Settings(data_dir=tmp_path / "data", registry=host, unqualified_registry=host,
                                       insecure_registries=f"{host},{seeded.proxy}", worker=False,
                                       allowed_registries=allowed), builder=FakeBuilder({}))

    # Registered while the proxy was listed; the list has been narrowed since.
    elsewhere = {"image": f"{seeded.proxy}/stable/img:1.0.0"}
    listing(seeded.proxy).environments.register(workspace=WS, name="elsewhere", document=elsewhere)
    services = listing(host)
    with pytest.raises(RefusedRegistry, match="ENVHUB_ALLOWED_REGISTRIES"):  # now refused when registered
        services.environments.register(workspace=WS, name="again", document=elsewhere)
    services.environments.register(workspace=WS, name="home", document={"image": f"{host}/msft/base:20230620.v1"})
    scan = Scanning(services, seeded, {}).scan()
    assert "ENVHUB_ALLOWED_REGISTRIES" in scan.errors[f"{seeded.proxy}/stable/img"]
    assert services.registry.requests[f"GET {seeded.proxy}"] == 0  # type: ignore[attr-defined]
    assert services.registry.requests[f"HEAD {seeded.proxy}"] == 0  # type: ignore[attr-defined]
    assert findings_of(scan) == {"home:1": ("patch_available", "20231010.v1", True)}


def test_the_report_goes_to_the_webhook_and_a_failed_delivery_is_recorded(seeded: Seeded, tmp_path: Path) -> None:
    from tests.integration.test_webhook import receiver

    host = seeded.host
    for failures, notified in ((0, True), (99, False)):
        with receiver(failures=failures) as (url, received):
            settings = Settings(data_dir=tmp_path / f"data-{failures}", registry=host, insecure_registries=host,
                                unqualified_registry=host, worker=False, scan_webhook=url)
            assert build_services(settings).ports["notifier"].kind == "webhook"  # the setting chooses it
            # The same adapter with no real waiting between its retries.
            services = build_services(settings, builder=FakeBuilder({}), notifier=WebhookNotifier(url, backoff=0.001))
            services.scanning.clock = services.scanning.concluder.clock = lambda: NOW
            services.environments.register(workspace=WS, name="old", document={"image": f"{host}/nv/pytorch:23.10-py3"})
            scan = Scanning(services, seeded, {}).scan()
        assert scan.notified is notified and received
        report = received[0]
        assert report["scan_id"] == scan.id and [f["environment"] for f in report["findings"]] == ["old:1"]
        assert (scan.notify_error is None) == notified
