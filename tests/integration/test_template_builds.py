"""Curated-style templates built for real: `{{latest-image-tag}}` resolved against a Distribution registry holding
a dated tag history, `{{latest-pypi-version}}` through the pip adapter (over a stand-in pip), and buildah building
from what they resolved to, through the HTTP API and the queue worker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared.adapters.oci_registry import OciRegistry
from shared.adapters.pip_index import PipIndex
from shared.bootstrap import build_services
from shared.services.templates import TemplateResolver
from tests.auth import authorized
from tests.fakes.package_index import fake_pip
from tests.integration.test_api_environments import WS, register
from tests.integration.test_builds import Stack, settings_for
from tests.registry_seed import copy_tag, push_image
from tests.stack import RunningRegistry, running_registry

BUSYBOX = "envhub/busybox"


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """The seeded registry with a dated history: 20240101.v1 is `latest` (the real busybox, so it can RUN), a
    newer 20240201.v1 and an older 20231201.v1 are other (layerless) images."""
    with running_registry(tmp_path_factory.mktemp("reg")) as running:
        copy_tag(running.host, BUSYBOX, "latest", "20240101.v1")
        push_image(running.host, BUSYBOX, "20231201.v1", created=datetime(2023, 12, 1, tzinfo=UTC), marker="older")
        push_image(running.host, BUSYBOX, "20240201.v1", created=datetime(2024, 2, 1, tzinfo=UTC),
                   marker="newer, not (yet) latest")
        yield running


@pytest.fixture
def stack(tmp_path: Path, reg: RunningRegistry) -> Iterator[Stack]:
    settings = settings_for(tmp_path, reg)
    services = build_services(settings)
    services.building.templates = TemplateResolver(services.registry, services.ports["scans"].adapter,
                                                   PipIndex(fake_pip(tmp_path), timeout=60), settings.default_registry)
    with authorized(TestClient(create_app(services))) as client:
        running = Stack(services, client)
        running.thread.start()
        yield running
        running.stop.set()
        running.thread.join(timeout=30)


def test_a_templated_dockerfile_builds_from_what_its_templates_resolve_to(stack: Stack,
                                                                          reg: RunningRegistry) -> None:
    written = f"{reg.host}/{BUSYBOX}:{{{{latest-image-tag}}}}"
    digest = stack.context(f"FROM {written}\nCOPY requirements.txt /tmp/requirements.txt\n"
                           "RUN cat /tmp/requirements.txt && echo ok\n",
                           **{"requirements.txt": b"demo-pkg=={{latest-pypi-version}}\n"})
    register(stack.api, "curated-like", {"build": {"context": digest}})
    miss = stack.ensure("curated-like")
    assert miss.status_code == 202, miss.text
    build = stack.wait(miss.json()["build_id"])
    lines = stack.api.get(f"{WS}/builds/{build['id']}/log").json()["lines"]
    assert build["status"] == "succeeded", lines

    resolved_ref = f"{reg.host}/{BUSYBOX}:20240101.v1"  # 20240201.v1 is newer but not the image `latest` names
    assert build["resolved"] == {written: resolved_ref, "demo-pkg=={{latest-pypi-version}}": "demo-pkg==1.10.0"}
    assert f"envhub: {{{{latest-image-tag}}}} in FROM {written} resolved to {resolved_ref}" in lines
    assert ("envhub: {{latest-pypi-version}} in demo-pkg=={{latest-pypi-version}} resolved to demo-pkg==1.10.0"
            in lines)
    assert any(line.startswith(f"STEP 1/3: FROM {resolved_ref}") for line in lines), lines
    assert "demo-pkg==1.10.0" in lines and "ok" in lines  # what the build's RUN saw

    registry = OciRegistry(insecure_registries={reg.host})
    latest = registry.head(reg.base)
    assert latest is not None and build["base_digests"] == {written: latest}  # as written -> what was used

    details = stack.api.get(f"{WS}/environments/curated-like/versions/1/image").json()
    assert details["exists"] is True and details["digest"] == build["digest"]
    assert details["resolved"] == build["resolved"] and details["dockerfile"].startswith(f"FROM {written}\n")

    # Asked newest first, stopping at the match; remembered for the next build and the patch scan.
    memory = stack.services.ports["scans"].adapter.known_digests(f"{reg.host}/{BUSYBOX}")
    assert memory["20240101.v1"] == latest and "20240201.v1" in memory and "20231201.v1" not in memory


def test_a_template_no_tag_satisfies_fails_the_build_naming_it(stack: Stack, reg: RunningRegistry) -> None:
    digest = stack.context(f"FROM {reg.host}/{BUSYBOX}:{{{{latest-image-tag:nightly-\\d+}}}}\nRUN echo ok\n")
    register(stack.api, "no-nightly", {"build": {"context": digest}})
    build = stack.wait(stack.ensure("no-nightly").json()["build_id"])
    assert build["status"] == "failed" and build["attempts"] == 0
    assert "{{latest-image-tag:nightly-\\d+}}" in build["reason"] and f"{reg.host}/{BUSYBOX}" in build["reason"]
