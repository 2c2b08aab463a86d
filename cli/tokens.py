"""`envhub token create|list|revoke`: bearer tokens for a workspace role, or for an admin."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import DEFAULT_URL, Json, Url, api, app, out
from cli.client import Client

tokens = typer.Typer(help="Bearer tokens: create (printed once), list, revoke.", no_args_is_help=True)
app.add_typer(tokens, name="token")


@tokens.command("create")
def create(
    workspace: Annotated[str | None, typer.Option(envvar="ENVHUB_WORKSPACE",
                                                  help="The workspace the token acts in (`*`: every one).")] = None,
    role: Annotated[str, typer.Option(help="reader, contributor or owner.")] = "reader",
    admin: Annotated[bool, typer.Option("--admin", help="An admin token (admins only).")] = False,
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    url: Url = DEFAULT_URL,
    as_json: Json = False,
) -> None:
    """Create a token; its secret is printed once and stored only as a hash."""
    client = Client(url, workspace or "-")
    body: dict[str, Any] = {"admin": admin, "label": label}
    if not admin:
        body |= {"workspace": workspace, "role": role}
    issued: dict[str, Any] = api(client.call, "POST", f"{client.base}/tokens", json=body)
    if as_json:
        print(json.dumps({"token": issued["token"], "id": issued["id"], "workspace": issued["workspace"],
                          "role": issued["role"], "admin": issued["admin"]}))
        return
    grant = "admin" if issued["admin"] else f"{issued['role']} in {issued['workspace']}"
    out.print(f"token {issued['id']} ({grant}); keep it now, it is not shown again:", highlight=False)
    print(issued["token"])


@tokens.command("list")
def list_tokens(
    workspace: Annotated[str | None, typer.Option(envvar="ENVHUB_WORKSPACE",
                                                  help="Tokens of this workspace (default: every token, admins).")
                         ] = None,
    url: Url = DEFAULT_URL,
    as_json: Json = False,
) -> None:
    """List tokens (never their secrets)."""
    client = Client(url, workspace or "-")
    found: dict[str, Any] = api(client.call, "GET", f"{client.base}/tokens",
                                params={} if workspace is None else {"workspace": workspace})
    if as_json:
        print(json.dumps(found["value"]))
        return
    table = Table("id", "grant", "label", "created", "revoked")
    for t in found["value"]:
        grant = "admin" if t["admin"] else f"{t['role']}@{t['workspace']}"
        table.add_row(t["id"], grant, t["label"], t["created_at"][:19], (t["revoked_at"] or "")[:19])
    out.print(table)


@tokens.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id, as `envhub token list` shows it.")],
    url: Url = DEFAULT_URL,
) -> None:
    """Revoke a token at once."""
    client = Client(url, "-")
    revoked: dict[str, Any] = api(client.call, "POST", f"{client.base}/tokens/{token_id}/revoke")
    out.print(f"token {revoked['id']} revoked at {revoked['revoked_at']}", highlight=False)
