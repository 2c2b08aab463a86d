"""Commands on environment definitions: hash offline, register, list, show, diff, archive, restore."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from cli.app import (
    DEFAULT_URL,
    REF_FORMS,
    Json,
    Url,
    Workspace,
    api,
    app,
    check_version,
    err,
    explicit_ref,
    fail,
    get_version,
    out,
    split_ref,
)
from cli.client import Client
from shared.domain.errors import EnvhubError

VersionRef = Annotated[str, typer.Argument(help="NAME:VERSION (an explicit version)")]
SCHEMA = "https://azuremlschemas.azureedge.net/latest/environment.schema.json"


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
    ref: Annotated[str, typer.Argument(help=REF_FORMS)],
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    as_yaml: Annotated[bool, typer.Option("--yaml", help="Print the definition as Azure ML YAML.")] = False,
    as_json: Json = False,
) -> None:
    """One version; --yaml prints it back as YAML that registers as the next version."""
    name, version = split_ref(ref)
    client = Client(url, workspace)
    record = get_version(client, name, version)
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
    check_version(against, "the version to compare with,")
    client = Client(url, workspace)
    result = get_version(client, name, version, "/diff", params={"against": against})
    if as_json:
        print(json.dumps(result))
        return
    out.print(f"{name}: {against} -> {version}: hash {'changed' if result['hash_changed'] else 'unchanged'}")
    for change in result["changes"]:
        out.print(f"  {change['field']}: {change['before']!r} -> {change['after']!r}", markup=False)


def _set_archived(ref: str, url: str, workspace: str, action: str) -> None:
    name, version = explicit_ref(ref, action)
    client = Client(url, workspace)
    record = api(client.call, "POST", client.ws(f"/environments/{name}/versions/{version}/{action}"))
    out.print(f"{record['name']}:{record['version']} archived={record['archived']}")


@app.command()
def archive(ref: VersionRef, url: Url = DEFAULT_URL, workspace: Workspace = "default") -> None:
    """Hide a version from listings and from @latest."""
    _set_archived(ref, url, workspace, "archive")


@app.command()
def restore(ref: VersionRef, url: Url = DEFAULT_URL, workspace: Workspace = "default") -> None:
    """Undo an archive."""
    _set_archived(ref, url, workspace, "restore")
