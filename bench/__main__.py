"""`python -m bench [name ...]`: run every benchmark (or those named) and print one table of ratios against
same-run baselines."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import (
    context_hashing,
    cosmos_operations,
    http_registrations,
    image_cache,
    load,
    patch_scan,
    queue_registrations,
    sdk,
)
from bench.timing import Row

# names for the command line, in run order
BENCHMARKS = ("hashing", "http", "queue", "sdk", "images", "cosmos", "scan", "load")


def machine() -> str:
    """One line naming the machine, with no paths in it."""
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return (f"machine: {platform.system()} {platform.machine()}, {cpus} CPUs ({usable} usable), "
            f"{platform.python_implementation()} {platform.python_version()}")


def table(rows: list[Row]) -> Table:
    """The report: ratio = envhub throughput / baseline throughput (higher is better), or for the rows marked
    lower-is-better (goal "<= g") envhub time / baseline time."""
    out = Table("benchmark", "envhub figure", "baseline figure", "ratio", "goal", "verdict")
    for row in rows:
        style = {"meets": "green", "misses": "red"}.get(row.verdict, "")
        out.add_row(row.benchmark, row.envhub, row.baseline, f"{row.ratio:.2f}", row.goal_text,
                    f"[{style}]{row.verdict}[/]" if style else row.verdict)
    return out


def operations_table(costs: list[cosmos_operations.Cost]) -> Table:
    """Store and queue operations per use case in Cosmos mode (exact counts, not timings)."""
    out = Table("use case (Cosmos mode)", "point reads", "queries", "writes", "queue sends", "goal", "verdict")
    for cost in costs:
        writes = sum(cost.ops[kind] for kind in ("create", "replace", "upsert", "delete"))
        goal = f"<= {cosmos_operations.HIT_GOAL_READS} reads, 0 queries" if cost.verdict() != "-" else ""
        style = {"meets": "green", "misses": "red"}.get(cost.verdict(), "")
        out.add_row(cost.use_case, str(cost.ops["read"]), str(cost.ops["query"]), str(writes), str(cost.sends), goal,
                    f"[{style}]{cost.verdict()}[/]" if style else cost.verdict())
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the suite (or the benchmarks named on the command line) in one temporary folder, removed at the end
    whatever happens."""
    wanted = selected(sys.argv[1:] if argv is None else argv)
    console = Console()
    if not console.is_terminal:  # rich falls back to 80 columns when piped, which wraps every row
        console = Console(width=120)
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    costs: list[cosmos_operations.Cost] = []
    with tempfile.TemporaryDirectory(prefix="envhub-bench-") as tmp:
        root = Path(tmp)
        for name in wanted:
            (root / name).mkdir()
        if "hashing" in wanted:
            console.print("hashing a generated build context ...")
            summary, hashing_rows = context_hashing.run(root / "hashing")
            rows += hashing_rows
            notes.append(f"{summary}; best of {context_hashing.REPEATS} interleaved runs")
        if "http" in wanted:
            console.print("registering over HTTP ...")
            rows += http_registrations.run(root / "http")
            notes.append(f"{http_registrations.REQUESTS} requests per HTTP side; best of "
                         f"{http_registrations.REPEATS} interleaved runs")
        if "queue" in wanted:
            console.print("registering through the registration queue and over HTTP ...")
            rows += queue_registrations.run(root / "queue")
            notes.append(f"queue: {queue_registrations.MESSAGES} registrations a side, best of "
                         f"{queue_registrations.REPEATS} interleaved runs")
        if "sdk" in wanted:
            if absent := sdk.missing():
                console.print(f"skipping the SDK benchmark: {', '.join(absent)} not installed", highlight=False)
            else:
                console.print("Azure ML's SDK against envhub serve --tls ...")
                rows += sdk.run(root / "sdk")
                notes.append(f"SDK: {sdk.SHAPE}")
        if "images" in wanted:
            if absent := image_cache.missing():
                console.print(f"skipping the image-cache benchmark: {', '.join(absent)} not installed "
                              "(`make test` installs them with apt)", highlight=False)
            else:
                console.print("ensuring images against a local registry, building with buildah ...")
                rows += image_cache.run(root / "images")
                notes.append(f"{image_cache.HITS} ensure-image hits vs HEADs, best of {image_cache.HIT_REPEATS}; "
                             f"builds best of {image_cache.BUILD_REPEATS}")
        if "cosmos" in wanted:
            if cosmos_operations.missing():
                console.print(f"skipping the Cosmos-mode benchmark: {', '.join(cosmos_operations.missing())}")
            else:
                console.print("counting store and queue operations in Cosmos mode (emulators) ...")
                costs, cosmos_rows = cosmos_operations.run(root / "cosmos")
                rows += cosmos_rows
        if "scan" in wanted:
            console.print("scanning base repositories on a recording stand-in registry ...")
            rows += patch_scan.run(root / "scan")
            notes.append(f"{patch_scan.SHAPE}; requests counted by the stand-in")
        if "load" in wanted:
            if absent := load.missing():
                console.print(f"skipping the load benchmark: {', '.join(absent)} not installed", highlight=False)
            else:
                console.print("load run: registrations, cache-hit ensures, a stalled registry ...")
                rows += load.run(root / "load", note=lambda text: console.print(text, highlight=False))
                notes.append(load.SHAPE)
    console.print(machine(), highlight=False)
    for note in notes:
        console.print(note, highlight=False)
    console.print(f"suite took {time.perf_counter() - started:.0f}s", highlight=False)
    console.print(table(rows))
    if costs:
        console.print(operations_table(costs))


def selected(names: list[str]) -> list[str]:
    """The benchmarks to run, in the suite's order: those named, or all of them."""
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"no benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in names or not names]


if __name__ == "__main__":
    main()
