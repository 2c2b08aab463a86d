"""The envhub command's shared parts: the Typer app, consoles, options, and error handling."""

from __future__ import annotations

import re
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from cli.client import ApiError, BadResponse, BadUrl, Client, Unreachable, service_url

app = typer.Typer(help="envhub: versioned, hashed, cached environments for ML teams.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
out = Console(soft_wrap=True, emoji=False)  # no emoji codes: "a:b:c" or a log line stays as written
err = Console(stderr=True, soft_wrap=True, emoji=False)
DEFAULT_URL = "http://127.0.0.1:7071"
LATEST = "latest"
REF_FORMS = "NAME, NAME:VERSION or NAME@latest"
_PART = re.compile(r"[^\s/\\?#%:@]+")  # a name or version: no separators, nothing a URL path would change


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit."""
    err.print(" ".join(message.split()), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _check_url(value: str) -> str:
    """--url: a missing scheme means http:// (the client says so if the service then cannot be reached)."""
    try:
        service_url(value)
    except BadUrl as error:
        fail(str(error))
    return value


Url = Annotated[str, typer.Option(envvar="ENVHUB_URL", callback=_check_url,
                                  help="The envhub service (http:// is assumed when no scheme is given).")]
Workspace = Annotated[str, typer.Option(envvar="ENVHUB_WORKSPACE", help="The workspace.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def api(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a client call, turning its failures into one-line errors."""
    try:
        return call(*args, **kwargs)
    except (ApiError, Unreachable, BadResponse) as error:
        explain(error)


def explain(error: ApiError | Unreachable | BadResponse) -> NoReturn:
    """A client failure as one line: exit 2 for what the service refused, 3 when unreachable, else 1."""
    if isinstance(error, ApiError):
        hint = (" (set ENVHUB_TOKEN to a token from `envhub token create`; on the machine running `envhub serve`, "
                "ENVHUB_DATA_DIR to its data folder)") if error.status == 401 else ""
        fail(f"error ({error.status}): {error.detail}{hint}", 2 if error.status < 500 else 1)
    fail(str(error), 3 if isinstance(error, Unreachable) else 1)


def split_ref(ref: str) -> tuple[str, str]:
    """NAME, NAME:VERSION or NAME@latest (an `azureml:` prefix is allowed); anything else exits 2 with one line."""
    text = ref.strip().removeprefix("azureml:")
    if "@" in text:
        name, _, version = text.partition("@")
        if version != LATEST:
            _bad_ref(ref, f"'@{version}' is not a label envhub knows; only @latest is" if version
                     else "nothing follows '@'")
    elif ":" in text:
        name, _, version = text.partition(":")
        if not version:
            _bad_ref(ref, "nothing follows ':'")
    else:
        name, version = text, LATEST
    if not name:
        _bad_ref(ref, "the name is missing")
    if not _PART.fullmatch(name):
        _bad_ref(ref, f"the name {name!r} has a character names cannot have (':', '@', '/', '?', '#', '%', space)")
    if not _PART.fullmatch(version):
        _bad_ref(ref, f"the version {version!r} has a character versions cannot have (':', '@', '/', space, ...)")
    return name, version


def _bad_ref(ref: str, why: str) -> NoReturn:
    fail(f"{ref!r} is not an environment reference: {why}; write {REF_FORMS}")


def check_version(version: str, what: str = "version") -> str:
    """A bare version argument (as `diff`'s second)."""
    if not _PART.fullmatch(version):
        fail(f"{what} {version!r} is not a version; write a version such as 1 or 2")
    return version


def check_id(value: str, what: str) -> str:
    """An id that goes into a URL path (a build id)."""
    if not _PART.fullmatch(value):
        fail(f"{value!r} is not a {what}")
    return value


def explicit_ref(ref: str, command: str) -> tuple[str, str]:
    """NAME:VERSION, for commands that change one version (archive, restore): no default, no @latest."""
    name, version = split_ref(ref)
    stripped = ref.strip().removeprefix("azureml:")
    if ":" not in stripped:
        fail(f"envhub {command} needs an explicit version: type `envhub {command} {name}:VERSION` "
             f"(e.g. `envhub {command} {name}:1`)")
    return name, version


def get_version(client: Client, name: str, version: str, suffix: str = "", method: str = "GET",
                **kwargs: Any) -> Any:
    """Call a route under one version; a 404 for @latest where every version is archived says so."""
    url = client.ws(f"/environments/{name}/versions/{version}{suffix}")
    try:
        return client.call(method, url, **kwargs)
    except ApiError as error:
        if error.status == 404 and version == LATEST and _all_archived(client, name):
            fail(f"every version of {name} is archived; restore one (`envhub restore {name}:VERSION`) "
                 f"or name a version ({name}:VERSION)")
        explain(error)
    except (Unreachable, BadResponse) as error:
        explain(error)


def _all_archived(client: Client, name: str) -> bool:
    """Whether `name` has versions and every one is archived (asked only after @latest was not found)."""
    try:
        link: str | None = client.ws(f"/environments/{name}/versions")
        seen = False
        while link:
            page = client.call("GET", link)
            for item in page.get("value", []):
                seen = True
                if not item.get("archived"):
                    return False
            link = page.get("nextLink")
        return seen
    except (ApiError, Unreachable, BadResponse, AttributeError, TypeError):
        return False
