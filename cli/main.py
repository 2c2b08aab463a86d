"""`envhub`: serve the local service, hash definitions offline, and use a running service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.table import Table

from cli.client import ApiError, Client, Unreachable
from shared.domain.errors import EnvhubError

app = typer.Typer(help="envhub: versioned, hashed, cached environments for ML teams.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
SCHEMA = "https://azuremlschemas.azureedge.net/latest/environment.schema.json"
Url = Annotated[str, typer.Option(envvar="ENVHUB_URL", help="The envhub service.")]
Workspace = Annotated[str, typer.Option(envvar="ENVHUB_WORKSPACE", help="The workspace.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DEFAULT_URL = "http://127.0.0.1:7071"


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def api(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a client call, turning its failures into one-line errors."""
    try:
        return call(*args, **kwargs)
    except ApiError as error:
        fail(f"error ({error.status}): {error.detail}", 2 if error.status < 500 else 1)
    except Unreachable as error:
        fail(str(error), 3)


def split_ref(ref: str) -> tuple[str, str]:
    """NAME, NAME:VERSION or NAME@latest."""
    ref = ref.removeprefix("azureml:")
    if "@" in ref:
        name, label = ref.split("@", 1)
        return name, label
    if ":" in ref:
        name, version = ref.split(":", 1)
        return name, version
    return ref, "latest"


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 7071,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(help="Where the store and contexts live.")] = Path(".envhub"),
    curated_dir: Annotated[Path | None, typer.Option(help="A folder of curated asset layouts.")] = None,
    registry_port: Annotated[int | None, typer.Option(help="Port of the local registry (default 5000).")] = None,
) -> None:
    """Run the local service: the HTTP API under /api, data under --data-dir."""
    import uvicorn

    from cli.serve import local_stack
    from functions.http_api import create_app
    from shared.bootstrap import build_services
    from shared.settings import Settings

    overrides: dict[str, Any] = {"data_dir": data_dir}
    if curated_dir is not None:
        overrides["curated_dir"] = curated_dir
    if registry_port is not None:
        overrides["registry_port"] = registry_port
    settings = Settings(**overrides)
    services = build_services(settings)
    try:
        with local_stack(services):
            err.print(f"envhub serving on http://{host}:{port}/api (docs at /api/docs), data in {data_dir}, "
                      f"registry {settings.registry_host}")
            uvicorn.run(create_app(services), host=host, port=port, log_level=settings.log_level.lower())
    except EnvhubError as error:
        fail(f"envhub cannot start: {error}", 1)


@app.command("hash")
def hash_(path: Path, as_json: Json = False) -> None:
    """Hash a definition offline: an environment YAML or a curated asset folder."""
    from shared.sources.local import describe_local

    try:
        local = describe_local(path)
    except EnvhubError as error:
        fail(f"{path}: {error}" if str(path) not in str(error) else str(error))
    d = local.description
    result = {"hash": d.hash, "image": d.image, "anonymous_version": d.anonymous_version, "kind": d.kind.value,
              "base_images": d.base_images}
    if as_json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        out.print(f"[bold]{key}[/]: {', '.join(value) if isinstance(value, list) else value}")


@app.command()
def register(
    path: Path,
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    name: Annotated[str | None, typer.Option(help="Register under this name instead.")] = None,
    version: Annotated[str | None, typer.Option(help="An explicit version.")] = None,
    as_json: Json = False,
) -> None:
    """Register an environment YAML (its conda file inlined, its build context uploaded)."""
    from shared.sources.local import describe_local

    try:
        local = describe_local(path)
    except EnvhubError as error:
        fail(f"{path}: {error}" if str(path) not in str(error) else str(error))
    client = Client(url, workspace)
    document = dict(local.document)
    if local.context is not None:
        manifest = local.context.manifest
        with err.status(f"uploading build context ({len(manifest.files)} files, {manifest.size} bytes)"):
            api(client.upload_context, local.context.tar_gz())
    target = name or local.submission.name
    if target is None:
        fail(f"{path}: the definition has no name; pass --name")
    document.pop("name", None)
    if version is not None:
        document.pop("version", None)
    record = api(client.register, target, document, version)
    if as_json:
        print(json.dumps(record))
        return
    out.print(f"registered [bold]{record['name']}:{record['version']}[/] ({record['kind']}) "
              f"hash {record['hash'][:12]} image {record['image']}")


@app.command("list")
def list_(url: Url = DEFAULT_URL, workspace: Workspace = "default", as_json: Json = False) -> None:
    """The latest version of each environment."""
    client = Client(url, workspace)
    items: list[dict[str, Any]] = []
    link: str | None = client.ws("/environments")
    while link:
        page = api(client.call, "GET", link)
        items += page["value"]
        link = page.get("nextLink")
    if as_json:
        print(json.dumps(items))
        return
    table = Table("name", "version", "kind", "hash", "created")
    for item in items:
        created = item["created_at"][:16].replace("T", " ")
        table.add_row(item["name"], item["version"], item["kind"], item["hash"][:12], created)
    out.print(table)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@latest")],
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    as_yaml: Annotated[bool, typer.Option("--yaml", help="Print the definition as Azure ML YAML.")] = False,
    as_json: Json = False,
) -> None:
    """One version; --yaml prints it back as YAML that registers as the next version."""
    name, version = split_ref(ref)
    client = Client(url, workspace)
    record = api(client.call, "GET", client.ws(f"/environments/{name}/versions/{version}"))
    if as_yaml:
        print(yaml.safe_dump(to_yaml_document(record), sort_keys=False), end="")
    elif as_json:
        print(json.dumps(record))
    else:
        for key in ("name", "version", "kind", "hash", "image", "anonymous_version", "base_images", "created_at",
                    "archived"):
            out.print(f"[bold]{key}[/]: {record[key]}")


def to_yaml_document(record: dict[str, Any]) -> dict[str, Any]:
    """An Azure ML environment YAML for a version, without its version so that it registers as the next."""
    definition = record["definition"]
    doc: dict[str, Any] = {"$schema": SCHEMA, "name": record["name"]}
    for key in ("description", "tags", "properties", "image", "conda_file", "build", "inference_config", "os_type"):
        value = definition.get(key)
        if value not in (None, {}, ""):
            doc[key] = value
    return doc


@app.command()
def diff(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION")],
    against: Annotated[str, typer.Argument(help="the version to compare with")],
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    as_json: Json = False,
) -> None:
    """What changed between two versions, and whether the image did."""
    name, version = split_ref(ref)
    client = Client(url, workspace)
    result = api(client.call, "GET", client.ws(f"/environments/{name}/versions/{version}/diff"),
                 params={"against": against})
    if as_json:
        print(json.dumps(result))
        return
    out.print(f"{name}: {against} -> {version}: hash {'changed' if result['hash_changed'] else 'unchanged'}")
    for change in result["changes"]:
        out.print(f"  {change['field']}: {change['before']!r} -> {change['after']!r}", markup=False)


def _set_archived(ref: str, url: str, workspace: str, action: str) -> None:
    name, version = split_ref(ref)
    client = Client(url, workspace)
    record = api(client.call, "POST", client.ws(f"/environments/{name}/versions/{version}/{action}"))
    out.print(f"{record['name']}:{record['version']} archived={record['archived']}")


@app.command()
def archive(ref: str, url: Url = DEFAULT_URL, workspace: Workspace = "default") -> None:
    """Hide a version from listings and from @latest."""
    _set_archived(ref, url, workspace, "archive")


@app.command()
def restore(ref: str, url: Url = DEFAULT_URL, workspace: Workspace = "default") -> None:
    """Undo an archive."""
    _set_archived(ref, url, workspace, "restore")


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
    import time

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
    if details["dockerfile"]:
        out.print("[bold]dockerfile[/]:")
        out.print(details["dockerfile"], markup=False, highlight=False)


def main() -> None:
    """The console script."""
    app(prog_name="envhub")


if __name__ == "__main__":
    main()
