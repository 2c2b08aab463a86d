"""Benchmark 5: the patch scan's registry requests against Microsoft's `{{latest-image-tag}}` resolution on the same
data, with the scan's wall time and peak memory.

The data: REPOSITORIES base repositories of TAGS dated tags each (`YYYYMMDD.vN`, every two weeks, every tenth a
`.v2` respin of the day before, plus a `latest` naming the newest), served by a recording stand-in registry
(bench/registry_standin.py) that counts every request. VERSIONS environment versions, VERSIONS_PER_NAME per name,
each name on one repository: versions 1-2 pinned to older dated tags, 3 on `:latest`, 4-10 built from a Dockerfile
`FROM <repository>:{{latest-image-tag}}` (as curated environments are written)."""

from __future__ import annotations

import io
import tarfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench.registry_standin import Image, StandInRegistry, make_image
from bench.timing import Row
from shared.bootstrap import Services, build_services
from shared.domain.hashing import image_name
from shared.domain.records import Description, EnvironmentRecord
from shared.domain.scans import Scan, ScanStatus
from shared.local_stack import worker_for
from shared.settings import Settings

REPOSITORIES, TAGS, VERSIONS = 50, 100, 10_000
VERSIONS_PER_NAME = 10
WORKSPACES = 10
KINDS = ("pinned", "pinned", "latest", *["template"] * 7)  # by version: 20 % pinned, 10 % latest, 70 % templated
TEMPLATE = "{{latest-image-tag}}"
SECOND_GOAL = 0.1  # an unchanged scan asks at most a tenth of what per-environment resolution asks
FIRST_DAY = date(2022, 1, 4)
CONDA = {"channels": ["conda-forge"], "dependencies": ["python=3.11", {"pip": ["numpy==1.26.4"]}]}
# pin_image_versions' Accept header (ORAS's manifest types)
ACCEPT = ", ".join(f"application/vnd.{kind}" for kind in (
    "docker.distribution.manifest.v2+json", "docker.distribution.manifest.list.v2+json",
    "oci.image.manifest.v1+json", "oci.image.index.v1+json", "oci.artifact.manifest.v1+json"))
SHAPE = (f"patch scan: {REPOSITORIES} repositories x {TAGS} dated tags, {VERSIONS:,} versions (70 % templated, "
         "10 % :latest, 20 % pinned)")


@dataclass(frozen=True)
class Use:
    """One environment version's base: its repository and reference (a dated tag, `latest` or the template)."""

    workspace: str
    name: str
    version: str
    repository: str
    reference: str


@dataclass(frozen=True)
class Measured:
    """One run's figures; request counts are the stand-in's, by "METHOD kind"."""

    versions: int
    templated: int
    baseline: Counter[str]
    baseline_seconds: float
    first: Counter[str]
    second: Counter[str]
    first_seconds: float
    second_seconds: float
    peak_bytes: int  # tracemalloc's peak over a third, unchanged scan
    scans: list[Scan]
    agree: bool  # both resolve every template to the same tag


def history(tags: int) -> list[tuple[str, datetime]]:
    """Dated tags, oldest first: one release every two weeks, every tenth a `.v2` respin of the previous day's."""
    out = []
    for index in range(tags):
        respin = index % 10 == 9
        day = FIRST_DAY + timedelta(days=14 * (index - (index + 1) // 10))
        out.append((f"{day:%Y%m%d}.v{2 if respin else 1}", datetime(day.year, day.month, day.day, 2 if respin else 1,
                                                                     tzinfo=UTC)))
    return out


def dataset(repositories: int, tags: int, versions: int) -> tuple[dict[str, dict[str, Image]], list[Use]]:
    """The registry's content and the environment versions' bases."""
    dated = history(tags)
    content: dict[str, dict[str, Image]] = {}
    for r in range(repositories):
        name = f"azureml/base{r:02d}-ubuntu22.04"
        content[name] = {tag: make_image(created, f"{name}:{tag}") for tag, created in dated}
        content[name]["latest"] = content[name][dated[-1][0]]
    names = sorted(content)
    uses = []
    for index in range(versions):
        n, v = divmod(index, VERSIONS_PER_NAME)
        kind = KINDS[v % len(KINDS)]
        reference = {"template": TEMPLATE, "latest": "latest"}.get(kind) or dated[(n * 7 + v) % (tags - 1)][0]
        uses.append(Use(f"team-{n % WORKSPACES}", f"env-{n:04d}", str(v + 1), names[n % repositories], reference))
    return content, uses


def azureml_assets(host: str, uses: Iterable[Use]) -> tuple[int, dict[str, str]]:
    """Microsoft's resolution, as azureml-assets' pin_image_versions does it for each environment it builds: GET the
    tag list (one request: no `n`, and no `Link` followed), then HEAD `latest` and each other tag in descending
    (lexical) order until a digest equals `latest`'s. Once per environment, nothing remembered between environments:
    the tool runs per Dockerfile. Returns the requests sent and the tag each repository resolved to."""
    sent, resolved = 0, {}
    with httpx.Client(base_url=f"http://{host}") as client:
        for use in uses:
            if use.reference != TEMPLATE:
                continue
            listed = client.get(f"/v2/{use.repository}/tags/list").raise_for_status().json().get("tags", [])
            sent += 1
            if "latest" not in listed:
                raise RuntimeError(f"{use.repository} has no latest tag")
            latest = None
            for tag in ["latest", *sorted((t for t in listed if t != "latest"), reverse=True)]:
                answer = client.head(f"/v2/{use.repository}/manifests/{quote(tag, safe='')}",
                                     headers={"Accept": ACCEPT}).raise_for_status()
                sent += 1
                digest = answer.headers["Docker-Content-Digest"]
                if tag == "latest":
                    latest = digest
                elif digest == latest:
                    resolved[use.repository] = tag
                    break
    return sent, resolved


def _context(dockerfile: str) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        archive.addfile(info, io.BytesIO(dockerfile.encode()))
    buffer.seek(0)
    return buffer


def populate(services: Services, host: str, uses: list[Use]) -> None:
    """Store every version. Registering 10,000 one by one takes minutes of describing the same few definitions,
    so each distinct base is described once (one uploaded context per repository for the templated ones) and its
    Description copied with model_copy, with a hash (and image name) of its own per version as distinct
    definitions would have; the records go straight into the store port."""
    described: dict[tuple[str, str], Description] = {}
    store: Any = services.ports["store"].adapter
    now = datetime.now(UTC)
    for use in uses:
        key = (use.repository, use.reference)
        if key not in described:
            document: dict[str, Any]
            if use.reference == TEMPLATE:
                dockerfile = f"FROM {host}/{use.repository}:{TEMPLATE}\nRUN echo bench\n"
                document = {"build": {"context": services.contexts.upload(_context(dockerfile)).digest}}
            else:
                document = {"image": f"{host}/{use.repository}:{use.reference}", "conda_file": CONDA}
            described[key] = services.environments.describe_document(document)
        base = described[key]
        digest = sha256(f"{base.hash}/{use.workspace}/{use.name}/{use.version}".encode()).hexdigest()
        store.insert(EnvironmentRecord(workspace=use.workspace, name=use.name, version=use.version, created_at=now,
                                       description=base.model_copy(update={"hash": digest,
                                                                           "image": image_name(digest)})))


def scan(services: Services, deadline: float = 300.0) -> Scan:
    """Start a scan and drain the scan queue in this process until it finishes."""
    started, worker = services.scanning.start("api"), worker_for(services, "scan")
    limit = time.monotonic() + deadline
    while (current := services.scanning.get(started.id)).status is not ScanStatus.FINISHED:
        if time.monotonic() > limit:
            raise RuntimeError(f"scan {started.id} did not finish within {deadline:.0f} s")
        if not worker.run_once():
            time.sleep(0.05)  # a failed message waits out its backoff
    return current


def measure(root: Path, repositories: int = REPOSITORIES, tags: int = TAGS, versions: int = VERSIONS) -> Measured:
    """Everything in one run against one stand-in: the baseline, two timed scans, a traced third one."""
    content, uses = dataset(repositories, tags, versions)
    with StandInRegistry(content) as registry:
        host = registry.host
        settings = Settings(data_dir=root / "data", registry=host, insecure_registries=host,
                            unqualified_registry=host, log_level="WARNING", worker=False)
        services = build_services(settings)
        populate(services, host, uses)
        started = time.perf_counter()
        sent, resolved = azureml_assets(host, uses)
        baseline_seconds, baseline = time.perf_counter() - started, registry.snapshot()
        if registry.total != sent:
            raise RuntimeError(f"the stand-in answered {registry.total} requests, the baseline counted {sent}")
        counts, seconds, scans = [], [], []
        for _ in range(2):
            before, started = registry.snapshot(), time.perf_counter()
            scans.append(scan(services))
            seconds.append(time.perf_counter() - started)
            counts.append(registry.snapshot() - before)
        tracemalloc.start()
        try:
            scans.append(scan(services))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    facts = scans[0].facts
    agree = all(facts[f"{host}/{repository}"][TEMPLATE].resolved_tag == tag for repository, tag in resolved.items())
    return Measured(versions, sum(use.reference == TEMPLATE for use in uses), baseline, baseline_seconds, counts[0],
                    counts[1], seconds[0], seconds[1], peak, scans, agree)


def breakdown(counts: Counter[str], of: Counter[str] | None = None) -> str:
    """A total and its parts, e.g. `350: 100 GET tags/list, ...`, and its share of `of`."""
    total = sum(counts.values())
    share = f" = {total / sum(of.values()):.4f}" if of else ""
    return f"{total:,}{share}: {', '.join(f'{n:,} {kind}' for kind, n in sorted(counts.items()))}"


def run(root: Path) -> list[Row]:
    """The report's rows."""
    return rows(measure(root))


def rows(m: Measured) -> list[Row]:
    """The rows of one measurement; raises when a scan failed or disagrees with the baseline."""
    if not all(s.status is ScanStatus.FINISHED and not s.errors for s in m.scans) or not m.agree:
        raise RuntimeError("a scan failed, or resolved a template to another tag than azureml-assets")
    baseline = f"{breakdown(m.baseline)} ({m.templated:,} templated versions resolved in turn)"
    first, second, asked = sum(m.first.values()), sum(m.second.values()), sum(m.baseline.values())
    return [
        Row("patch scan, first: registry requests vs azureml-assets' resolution",
            breakdown(m.first, m.baseline), baseline, first / asked, None, lower_is_better=True),
        Row("patch scan, second (unchanged): the same", breakdown(m.second, m.baseline),
            baseline, second / asked, SECOND_GOAL, lower_is_better=True),
        Row(f"patch scan of {m.versions:,} versions: time (1st, 2nd), tracemalloc peak (3rd)",
            f"{m.first_seconds:.1f} s, {m.second_seconds:.1f} s; {m.peak_bytes / 2**20:.0f} MiB",
            f"{m.baseline_seconds:.1f} s resolving in turn", m.first_seconds / m.baseline_seconds, None,
            lower_is_better=True),
    ]
