"""`envhub`: serve the local service, hash definitions offline, and use a running service."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from cli import builds, deployments, environments, scans  # noqa: F401  (their commands register on the app)
from cli.app import app, err, fail

__all__ = ["app", "main"]
from shared.domain.errors import EnvhubError


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 7071,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(help="Where the store and contexts live.")] = Path(".envhub"),
    curated_dir: Annotated[Path | None, typer.Option(help="A folder of curated asset layouts.")] = None,
    registry_port: Annotated[int | None, typer.Option(help="Port of the local registry (default 5000).")] = None,
    emulators: Annotated[bool, typer.Option(
        "--emulators", help="Run the Azure home's adapters (Cosmos DB, Storage queues, Blob Storage) against "
                            "local emulators started as children; builds still use buildah.")] = False,
) -> None:
    """Run the local service: the HTTP API under /api, data under --data-dir."""
    import uvicorn

    from functions.http_api import create_app
    from shared.bootstrap import build_services
    from shared.local_stack import emulated, local_stack
    from shared.settings import Settings

    overrides: dict[str, Any] = {"data_dir": data_dir}
    if curated_dir is not None:
        overrides["curated_dir"] = curated_dir
    if registry_port is not None:
        overrides["registry_port"] = registry_port
    if emulators:
        overrides["emulators"] = True
    try:
        settings = Settings(**overrides)
        with ExitStack() as stack:
            if settings.emulators:
                settings = stack.enter_context(emulated(settings))
            services = build_services(settings)
            stack.enter_context(local_stack(services))
            mode = "emulators (Cosmos DB, Azurite)" if settings.emulators else "SQLite"
            err.print(f"envhub serving on http://{host}:{port}/api (docs at /api/docs), data in {data_dir}, "
                      f"store {mode}, registry {settings.registry_host}")
            uvicorn.run(create_app(services), host=host, port=port, log_level=settings.log_level.lower())
    except (EnvhubError, ValidationError) as error:
        fail(f"envhub cannot start: {error}", 1)


def main() -> None:
    """The console script."""
    app(prog_name="envhub")


if __name__ == "__main__":
    main()
