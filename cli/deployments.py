"""`envhub deployment …`: record which environment and image digest a deployment runs; list, show, delete."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.table import Table

from cli.app import DEFAULT_URL, Json, Url, Workspace, api, app, out
from cli.client import ApiError, Client, Unreachable

deployment_app = typer.Typer(help="Deployments: the assets that run an environment's image.", no_args_is_help=True)
app.add_typer(deployment_app, name="deployment")

Name = Annotated[str, typer.Argument(help="The deployment's name.")]
FIELDS = ("workspace", "name", "environment", "image_digest", "endpoint", "kind", "needs_redeploy",
          "redeploy_reason", "created_at", "updated_at")


def _url(client: Client, name: str | None = None) -> str:
    return client.ws("/deployments" if name is None else f"/deployments/{quote(name, safe='')}")


@deployment_app.command("set")
def set_(
    name: Name,
    environment: Annotated[str, typer.Option(help="NAME:VERSION or NAME@latest (recorded as the version it names).")],
    image_digest: Annotated[str | None, typer.Option(
        help="sha256:<64 hex>; by default the environment's current image digest.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="The endpoint the deployment serves behind.")] = None,
    kind: Annotated[str, typer.Option(help="online or batch.")] = "online",
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    as_json: Json = False,
) -> None:
    """Create or replace a deployment: what environment and image digest it runs."""
    client = Client(url, workspace)
    body: dict[str, Any] = {"environment": environment, "kind": kind}
    if image_digest is not None:
        body["image_digest"] = image_digest
    if endpoint is not None:
        body["endpoint"] = endpoint
    record = api(client.call, "PUT", _url(client, name), json=body)
    if as_json:
        print(json.dumps(record))
        return
    created = record["created_at"] == record["updated_at"]  # a replaced deployment keeps its created_at
    out.print(f"{'created' if created else 'updated'} deployment [bold]{record['name']}[/] ({record['kind']}): "
              f"{record['environment']} {record['image_digest']}", highlight=False)


@deployment_app.command("list")
def list_(
    needs_redeploy: Annotated[bool, typer.Option("--needs-redeploy", help="Only those flagged for redeploy.")] = False,
    url: Url = DEFAULT_URL,
    workspace: Workspace = "default",
    as_json: Json = False,
) -> None:
    """A workspace's deployments, by name."""
    client = Client(url, workspace)
    items: list[dict[str, Any]] = []
    link: str | None = _url(client)
    params: dict[str, str] | None = {"needs_redeploy": "true"} if needs_redeploy else None
    while link:
        page = api(client.call, "GET", link, params=params)
        items += page["value"]
        link, params = page.get("nextLink"), None  # the next link carries the query
    if as_json:
        print(json.dumps(items))
        return
    table = Table("name", "environment", "kind", "endpoint", "image digest", "redeploy", "updated")
    for item in items:
        digest = item["image_digest"] or ""
        redeploy = (item["redeploy_reason"] or "yes") if item["needs_redeploy"] else ""
        table.add_row(item["name"], item["environment"], item["kind"], item["endpoint"] or "",
                      digest[:19], redeploy, item["updated_at"][:16].replace("T", " "))
    out.print(table)


@deployment_app.command("show")
def show(name: Name, url: Url = DEFAULT_URL, workspace: Workspace = "default", as_json: Json = False) -> None:
    """One deployment."""
    client = Client(url, workspace)
    record = api(client.call, "GET", _url(client, name))
    if as_json:
        print(json.dumps(record))
        return
    for key in FIELDS:
        out.print(f"[bold]{key}[/]: {record[key]}", highlight=False)


@deployment_app.command("delete")
def delete(name: Name, url: Url = DEFAULT_URL, workspace: Workspace = "default") -> None:
    """Remove a deployment."""
    client = Client(url, workspace)
    api(_delete, client, _url(client, name))
    out.print(f"deleted deployment {name}", markup=False, highlight=False)


def _delete(client: Client, url: str) -> None:
    """DELETE answers 204 with no body, which Client.call (it parses JSON) does not expect; errors as it reports
    them."""
    try:
        response = client.http.request("DELETE", url)
    except httpx.TransportError as error:
        raise Unreachable(f"cannot reach envhub at {client.base} ({error}); is `envhub serve` running?") from error
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text or response.reason_phrase
        raise ApiError(response.status_code, str(detail))
