"""The envhub command's shared parts: the Typer app, consoles, options, and error handling."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from cli.client import ApiError, Unreachable

app = typer.Typer(help="envhub: versioned, hashed, cached environments for ML teams.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
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
