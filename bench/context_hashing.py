"""Benchmark 1: hashing a generated 100 MiB build context, against plain sha256 over the same bytes."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.timing import Row, best_of
from shared.domain.context import DOCKERIGNORE
from shared.domain.definition import parse_document
from shared.domain.hashing import ResolvedContext, definition_hash
from shared.sources.folders import ContextFolder
from shared.sources.local import describe_local
from shared.sources.yaml_files import load_environment_yaml

TOTAL_BYTES = 100 * 1024 * 1024
FILES = 200
REPEATS = 7  # one run is a fraction of a second, so more rounds are cheap and steady the minimum
# hashlib.file_digest (what envhub's file_sha256 calls) reads into a reusable 256 KiB buffer; the
# baseline reads the same way so that only envhub's own work differs.
BUFFER = 1 << 18
GOAL = 0.6
IGNORED = ("**/*.log", "scratch/")


@dataclass(frozen=True)
class Context:
    """The generated context: the env.yml naming it, its folder, and what it holds."""

    yml: Path
    folder: Path
    files: int
    size: int
    ignored: int


def generate(root: Path) -> Context:
    """Write env.yml and ctx/ (Dockerfile, .dockerignore, random files of mixed sizes in nested folders)."""
    rng = random.Random(20240601)  # a fixed seed: the same layout every run, so runs compare
    folder = root / "ctx"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM busybox\nCOPY . /app\n")
    (folder / DOCKERIGNORE).write_text("# build noise\n" + "\n".join(IGNORED) + "\n")
    # Log-normal weights give a few large files and many small ones, as real contexts have.
    weights = [rng.lognormvariate(0, 1.5) for _ in range(FILES)]
    scale = (TOTAL_BYTES - FILES) / sum(weights)
    sizes = [1 + int(w * scale) for w in weights]
    sizes[0] += TOTAL_BYTES - sum(sizes)
    ignored = 0
    for index, size in enumerate(sizes):
        if index % 25 == 0:
            rel, ignored = f"scratch/run{index}/out.bin", ignored + 1
        elif index % 17 == 0:
            rel, ignored = f"src/pkg{index % 5}/build{index}.log", ignored + 1
        else:
            rel = f"src/pkg{index % 5}/mod{index % 3}/{'deep/' * (index % 2)}file{index}.bin"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        if index % 7 == 0:
            path.chmod(0o755)
    yml = root / "env.yml"
    yml.write_text(yaml.safe_dump({"name": "bench-build", "build": {"path": "ctx"}}))
    return Context(yml=yml, folder=folder, files=FILES + 2, size=sum(p.stat().st_size for p in _files(folder)),
                   ignored=ignored)


def _files(folder: Path) -> list[Path]:
    out: list[Path] = []
    for base, subdirs, names in os.walk(folder):
        subdirs.sort()  # a fixed order, as envhub's manifest has
        out += [Path(base) / name for name in sorted(names)]
    return out


def envhub_hash(yml: Path) -> str:
    """What describe_local does up to the cache key: load, scan the folder, parse, hash (no anonymous version)."""
    loaded = load_environment_yaml(yml)
    assert loaded.context_dir is not None
    folder = ContextFolder(loaded.context_dir)
    build = {**loaded.document["build"], "context": folder.manifest.digest}
    definition = parse_document({**loaded.document, "build": build}, where=str(yml)).definition
    resolved = ResolvedContext(manifest=folder.manifest, dockerignore=folder.read_text(DOCKERIGNORE))
    return definition_hash(definition, resolved)


def full_describe(yml: Path) -> str:
    """The whole describe_local, which also walks every byte a second time for Azure ML's anonymous version."""
    return describe_local(yml).description.anonymous_version


def baseline_hash(folder: Path) -> str:
    """The floor: list the files and feed every byte to one sha256."""
    digest = hashlib.sha256()
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    for path in _files(folder):
        with path.open("rb") as handle:  # opened as envhub opens it
            while size := handle.readinto(buffer):
                digest.update(view[:size])
    return digest.hexdigest()


def run(root: Path) -> tuple[str, list[Row]]:
    """Generate the context under `root`, time the three sides, and return a summary line and two rows."""
    ctx = generate(root)
    # Not timed: the benchmark must time what describe_local really computes, so check it agrees.
    if envhub_hash(ctx.yml) != describe_local(ctx.yml).description.hash:
        raise RuntimeError("the benchmarked hashing path disagrees with describe_local")
    base, scan, full = best_of([lambda: baseline_hash(ctx.folder), lambda: envhub_hash(ctx.yml),
                                lambda: full_describe(ctx.yml)], REPEATS)
    mib = ctx.size / (1024 * 1024)
    summary = f"context: {ctx.files} files, {mib:.1f} MiB, {ctx.ignored} excluded by .dockerignore"
    baseline = f"{mib / base:,.0f} MiB/s"
    return summary, [
        Row("hash 100 MiB context: scan + definition_hash", f"{mib / scan:,.0f} MiB/s", baseline, base / scan, GOAL),
        Row("describe_local: + anonymous version", f"{mib / full:,.0f} MiB/s", baseline, base / full, None),
    ]
