"""Commands on images and builds: ensure (build or cache hit, with the log streamed), follow or cancel a build by
id, and image details."""

from __future__ import annotations

import json
import os
import shlex
import time
from typing import Annotated, Any

import typer

from cli.app import (
    DEFAULT_URL,
    REF_FORMS,
    Json,
    Url,
    Workspace,
    api,
    app,
    check_id,
    err,
    fail,
    get_version,
    out,
    split_ref,
)
from cli.client import Client

BuildId = Annotated[str, typer.Argument(help="A build's id, as `envhub build --no-wait` prints it.")]
Poll = Annotated[float, typer.Option(help="Seconds between log polls.")]
FINISHED_BADLY = ("failed", "cancelled")


@app.command()
def build(
    ref: Annotated[str, typer.Argument(help=REF_FORMS)],
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the build to its end.")] = True,
    as_json: Json = False,
    poll: Poll = 1.0,
) -> None:
    """Ensure an environment's image: a cache hit, or a build whose log is streamed while it runs."""
    name, version = split_ref(ref)
    client = Client(url, workspace)
    ensured = get_version(client, name, version, "/image", method="POST")
    result: dict[str, Any] = {"status": ensured["status"], "image": ensured["image"], "digest": ensured["digest"],
                              "cached": ensured["cached"], "build_id": ensured["build_id"]}
    if not ensured["cached"] and wait:
        build_record = follow(client, ensured["build_id"], quiet=as_json, poll=poll, hint=_options(url, workspace))
        result.update(status=build_record["status"], digest=build_record["digest"])
        if build_record["status"] != "succeeded" and not as_json:
            err.print(f"build {build_record['status']}: {build_record['reason']}", markup=False, highlight=False)
    if as_json:
        print(json.dumps(result))
    elif result["cached"]:
        out.print(f"cached: {result['image']}@{result['digest']}")
    elif result["status"] == "succeeded":
        out.print(f"built: {result['image']}@{result['digest']}")
    else:
        out.print(f"build {result['build_id']}: {result['status']}")
        if not wait and result["build_id"] and result["status"] not in FINISHED_BADLY:
            err.print(f"follow it with `envhub build-log {result['build_id']} --follow{_options(url, workspace)}`",
                      markup=False, highlight=False)
    if result["status"] in FINISHED_BADLY:
        raise typer.Exit(1)


@app.command("build-log")
def build_log(
    build_id: BuildId,
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until the build finishes.")] = False,
    poll: Poll = 1.0,
) -> None:
    """A build's log by id (on stdout); --follow streams it to the build's end. Exits 1 if it failed."""
    check_id(build_id, "build id")
    client = Client(url, workspace)
    hint = _options(url, workspace)
    if follow_:
        record = follow(client, build_id, quiet=False, poll=poll, hint=hint, to_stdout=True)
    else:
        page = api(client.call, "GET", client.ws(f"/builds/{build_id}/log"), params={"offset": 0})
        for line in page["lines"]:
            out.print(line, markup=False, highlight=False)
        if not page["finished"]:
            err.print(f"build {build_id} is {page['status']}; follow it with "
                      f"`envhub build-log {build_id} --follow{hint}`", markup=False, highlight=False)
            return
        record = api(client.call, "GET", client.ws(f"/builds/{build_id}"))
    _ended(record)


@app.command("build-cancel")
def build_cancel(build_id: BuildId, url: Url = DEFAULT_URL, workspace: Workspace = "default",
                 as_json: Json = False) -> None:
    """Cancel a build by id: at once when queued, within a second or two when running."""
    check_id(build_id, "build id")
    client = Client(url, workspace)
    record: dict[str, Any] = api(client.call, "POST", client.ws(f"/builds/{build_id}/cancel"))
    if as_json:
        print(json.dumps(record))
    elif record["status"] in ("succeeded", "failed", "cancelled"):
        out.print(f"build {record['id']}: already {record['status']}", markup=False, highlight=False)
    else:
        out.print(f"build {record['id']}: cancel requested ({record['status']}); "
                  f"`envhub build-log {record['id']} --follow{_options(url, workspace)}` shows its end",
                  markup=False, highlight=False)


def _ended(record: dict[str, Any]) -> None:
    """Say how a finished build ended; exit 1 unless it succeeded."""
    if record["status"] == "succeeded":
        err.print(f"build {record['id']}: succeeded: {record['image']}@{record['digest']}",
                  markup=False, highlight=False)
        return
    fail(f"build {record['id']}: {record['status']}: {record.get('reason') or 'no reason given'}", 1)


def _options(url: str, workspace: str) -> str:
    """The --url/--workspace a follow-up command needs to reach the same build (none when they are the default)."""
    parts = ""
    if url != os.environ.get("ENVHUB_URL", DEFAULT_URL):
        parts += f" --url {shlex.quote(url)}"
    if workspace != os.environ.get("ENVHUB_WORKSPACE", "default"):
        parts += f" --workspace {shlex.quote(workspace)}"
    return parts


def follow(client: Client, build_id: str, *, quiet: bool, poll: float, hint: str = "",
           to_stdout: bool = False) -> dict[str, Any]:
    """Stream a build's log until it finishes; return its record. Ctrl-C leaves the build running and says so."""
    stream = out if to_stdout else err
    offset = 0
    try:
        with err.status(f"build {build_id[:12]}: waiting") as status:
            while True:
                page = api(client.call, "GET", client.ws(f"/builds/{build_id}/log"), params={"offset": offset})
                offset = page["next_offset"]
                if not quiet:
                    for line in page["lines"]:
                        stream.print(line, markup=False, highlight=False)
                status.update(f"build {build_id[:12]}: {page['status']} ({offset} log lines)")
                if page["finished"]:
                    record: dict[str, Any] = api(client.call, "GET", client.ws(f"/builds/{build_id}"))
                    return record
                time.sleep(poll)
    except KeyboardInterrupt:
        fail(f"build {build_id} goes on; follow it with `envhub build-log {build_id} --follow{hint}` "
             f"or cancel it with `envhub build-cancel {build_id}{hint}`", 130)


@app.command()
def image(
    ref: Annotated[str, typer.Argument(help=REF_FORMS)],
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    as_json: Json = False,
) -> None:
    """An environment's image details: name, whether it exists, digest, Dockerfile, build status."""
    name, version = split_ref(ref)
    client = Client(url, workspace)
    details = get_version(client, name, version, "/image")
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
