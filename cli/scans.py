"""Commands of the patch watch: run a scan (with progress) and list findings."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from cli.app import DEFAULT_URL, Json, Url, Workspace, api, app, err, out
from cli.client import Client


@app.command()
def scan(
    url: Url = DEFAULT_URL,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the scan to its end.")] = False,
    as_json: Json = False,
    poll: Annotated[float, typer.Option(help="Seconds between progress polls.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 3600.0,
) -> None:
    """Scan every base image in use for moved and patched tags; flag rebuilds and redeploys."""
    client = Client(url, "-")
    started: dict[str, Any] = api(client.call, "POST", f"{client.base}/patch-scans")
    result = follow(client, started, quiet=as_json, poll=poll, timeout=timeout) if wait else started
    if as_json:
        print(json.dumps({"scan_id": result["id"], "status": result["status"],
                          "findings": [_plain(f) for f in result["findings"]], "redeploy": result["redeploy"]}))
        return
    out.print(f"scan {result['id']}: {result['status']}, {result['done']}/{len(result['repositories'])} repositories")
    if result["status"] == "finished":
        _print_report(result)


def follow(client: Client, scan: dict[str, Any], *, quiet: bool, poll: float, timeout: float) -> dict[str, Any]:
    """Poll until the scan finishes, with a progress bar over its repositories."""
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), console=err, disable=quiet) as bar:
        task = bar.add_task("scan", total=max(1, len(scan["repositories"])))
        while scan["status"] != "finished":
            if time.monotonic() > deadline:
                err.print(f"scan {scan['id']} still running after {timeout:.0f} s")
                raise typer.Exit(1)
            time.sleep(poll)
            scan = api(client.call, "GET", f"{client.base}/patch-scans/{scan['id']}")
            bar.update(task, completed=scan["done"])
    return scan


def _plain(finding: dict[str, Any]) -> dict[str, Any]:
    keys = ("workspace", "environment", "type", "base_image", "current", "available", "overdue")
    return {key: finding.get(key) for key in keys}


def _print_report(scan: dict[str, Any]) -> None:
    for repository, error in scan["errors"].items():
        err.print(f"registry error on {repository}: {error}", markup=False)
    if scan["findings"]:
        table = Table("workspace", "environment", "finding", "base image", "current", "available", "overdue")
        for f in scan["findings"]:
            table.add_row(f["workspace"], f["environment"], f["type"] + (" (new)" if f.get("new") else ""),
                          f["base_image"], f["current"] or "", f["available"] or "", "yes" if f["overdue"] else "")
        out.print(table)
    else:
        out.print("no findings")
    for deployment in scan["redeploy"]:
        out.print(f"redeploy {deployment['workspace']}/{deployment['deployment']} ({deployment['environment']}): "
                  f"{deployment['reason']}", markup=False)


@app.command()
def findings(
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses (open, acknowledged, snoozed, "
                                                          "resolved); repeatable.")] = None,
    as_json: Json = False,
) -> None:
    """A workspace's findings."""
    client = Client(url, workspace)
    items: list[dict[str, Any]] = []
    link: str | None = client.ws("/findings")
    params: dict[str, Any] = {"status": status} if status else {}
    while link is not None:
        page = api(client.call, "GET", link, params=params)
        items += page["value"]
        link, params = page.get("nextLink"), {}
    if as_json:
        print(json.dumps(items))
        return
    table = Table("id", "environment", "finding", "base image", "available", "status")
    for f in items:
        table.add_row(f["id"][:12], f["environment"], f["type"] + (" overdue" if f["overdue"] else ""),
                      f["base_image"], f["available"] or "", f["status"])
    out.print(table if items else "no findings")
