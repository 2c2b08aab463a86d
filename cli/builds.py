"""Commands on images: ensure (build or cache hit, with the log streamed) and image details."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from cli.app import DEFAULT_URL, Json, Url, Workspace, api, app, err, out, split_ref
from cli.client import Client


@app.command()
def build(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION or NAME@latest")],
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the build to its end.")] = True,
    as_json: Json = False,
    poll: Annotated[float, typer.Option(help="Seconds between log polls.")] = 1.0,
) -> None:
    """Ensure an environment's image: a cache hit, or a build whose log is streamed while it runs."""
    name, version = split_ref(ref)
    client = Client(url, workspace)
    ensured = api(client.call, "POST", client.ws(f"/environments/{name}/versions/{version}/image"))
    result: dict[str, Any] = {"status": ensured["status"], "image": ensured["image"], "digest": ensured["digest"],
                              "cached": ensured["cached"], "build_id": ensured["build_id"]}
    if not ensured["cached"] and wait:
        build_record = follow(client, ensured["build_id"], quiet=as_json, poll=poll)
        result.update(status=build_record["status"], digest=build_record["digest"])
        if build_record["status"] != "succeeded" and not as_json:
            err.print(f"build {build_record['status']}: {build_record['reason']}")
    if as_json:
        print(json.dumps(result))
    elif result["cached"]:
        out.print(f"cached: {result['image']}@{result['digest']}")
    elif result["status"] == "succeeded":
        out.print(f"built: {result['image']}@{result['digest']}")
    else:
        out.print(f"build {result['build_id']}: {result['status']}")
    if result["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)


def follow(client: Client, build_id: str, *, quiet: bool, poll: float) -> dict[str, Any]:
    """Stream a build's log until it finishes; return its record."""
    offset = 0
    with err.status(f"build {build_id[:12]}: waiting") as status:
        while True:
            page = api(client.call, "GET", client.ws(f"/builds/{build_id}/log"), params={"offset": offset})
            offset = page["next_offset"]
            if not quiet:
                for line in page["lines"]:
                    err.print(line, markup=False, highlight=False)
            status.update(f"build {build_id[:12]}: {page['status']} ({offset} log lines)")
            if page["finished"]:
                record: dict[str, Any] = api(client.call, "GET", client.ws(f"/builds/{build_id}"))
                return record
            time.sleep(poll)


@app.command()
def image(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION or NAME@latest")],
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    as_json: Json = False,
) -> None:
    """An environment's image details: name, whether it exists, digest, Dockerfile, build status."""
    name, version = split_ref(ref)
    client = Client(url, workspace)
    details = api(client.call, "GET", client.ws(f"/environments/{name}/versions/{version}/image"))
    if as_json:
        print(json.dumps(details))
        return
    for key in ("image", "exists", "digest", "build_status", "base_digests"):
        out.print(f"[bold]{key}[/]: {details[key]}")
    for written, used in (details.get("resolved") or {}).items():  # build-time templates, as the build used them
        out.print(f"[bold]resolved[/]: {written} -> {used}", markup=True, highlight=False)
    if details["dockerfile"]:
        out.print("[bold]dockerfile[/]:")
        out.print(details["dockerfile"], markup=False, highlight=False)
