"""`envhub`: serve the local service, hash definitions offline, and use a running service."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from cli import builds, deployments, environments, queues, scans, tokens  # noqa: F401  (their commands register on the app)
from cli.app import app, err, fail
from shared.domain.errors import EnvhubError

__all__ = ["app", "main"]
ADMIN_TOKEN = "admin-token"  # noqa: S105 -- the file's name, not a secret


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
    tls: Annotated[bool, typer.Option(
        "--tls", envvar="ENVHUB_TLS", help="Serve https with a certificate signed by a local CA kept in "
                                           "<data-dir>/tls (Azure ML's SDK sends tokens only over https).")] = False,
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
                settings = stack.enter_context(emulated(settings, tls_host=host if tls else None))
                _say_upload_proxy(settings.data_dir)
            services = build_services(settings)
            stack.enter_context(local_stack(services))
            if settings.auth == "tokens":
                services.access.admin_token(settings.data_dir / ADMIN_TOKEN)
                err.print(f"admin token in {data_dir / ADMIN_TOKEN} (mode 0600); the CLI on this machine reads it "
                          "when ENVHUB_DATA_DIR names that folder, others need ENVHUB_TOKEN (`envhub token create`)")
            certfile, keyfile = _tls_files(settings.data_dir, host, port) if tls else (None, None)
            scheme = "https" if tls else "http"
            mode = "emulators (Cosmos DB, Azurite)" if settings.emulators else "SQLite"
            err.print(f"envhub serving on {scheme}://{host}:{port}/api (docs at /api/docs), data in {data_dir}, "
                      f"store {mode}, registry {settings.registry_host}")
            uvicorn.run(create_app(services), host=host, port=port, log_level=settings.log_level.lower(),
                        ssl_certfile=certfile, ssl_keyfile=keyfile)
    except (EnvhubError, ValidationError) as error:
        fail(f"envhub cannot start: {error}", 1)


def _say_upload_proxy(data_dir: Path) -> None:
    """Print how Azure ML's SDK reaches the emulated Blob Storage, when `serve --tls --emulators` runs the proxy."""
    import json

    from shared.local_stack import EMULATORS_FILE

    known = json.loads((data_dir / EMULATORS_FILE).read_text())
    if "blob_proxy" in known:
        err.print(f"Azure ML's SDK uploads: HTTPS_PROXY={known['blob_proxy']} NO_PROXY=127.0.0.1,localhost, "
                  f"cloud_metadata storage_endpoint {known['storage_endpoint']!r}", markup=False)


def _tls_files(data_dir: Path, host: str, port: int) -> tuple[str, str]:
    """The server certificate and key `envhub serve --tls` keeps (made when due); prints which CA to trust."""
    from shared.adapters.local_tls import ensure

    try:
        files = ensure(data_dir, host)
    except OSError as error:
        fail(f"envhub cannot start: cannot keep its TLS certificate under {data_dir / 'tls'}: {error}", 1)
    # A new CA is worth saying: whoever trusted the previous one must trust this one instead.
    new = " (a new CA)" if files.new_ca else ""
    err.print(f"trust {files.ca} (REQUESTS_CA_BUNDLE) for https://{host}:{port}{new}", markup=False)
    return str(files.certificate), str(files.key)


def main() -> None:
    """The console script."""
    app(prog_name="envhub")


if __name__ == "__main__":
    main()
