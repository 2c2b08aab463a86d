"""The HTTP API: one FastAPI app, served by uvicorn locally and by AsgiFunctionApp in Azure."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from functions.http_api import access, deployments, environments, images, jobs, messages, problems, scans
from functions.http_api.arm import datastores as arm_datastores
from functions.http_api.arm import environments as arm_environments
from functions.http_api.arm import errors as arm_errors
from functions.http_api.arm import jobs as arm_jobs
from functions.http_api.audit import Audit
from functions.http_api.auth import authorize
from functions.http_api.limits import BodyLimits
from shared.bootstrap import Services

API_PREFIX = "/api"  # the Functions host's route prefix; kept locally so URLs are the same everywhere
DOCS_ASSETS = {  # Swagger UI's files the docs page loads, from the fastapi-offline package's swagger-ui-dist
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def create_app(services: Services) -> FastAPI:
    """The API over these services; OpenAPI at /api/openapi.json, docs at /api/docs."""
    app = FastAPI(title="envhub", version="0.1.0",
                  description="Versioned environment definitions, hashed, cached and built.",
                  openapi_url=f"{API_PREFIX}/openapi.json", docs_url=None, redoc_url=None)
    app.state.services = services
    problems.install(app)
    arm_errors.install(app)  # after problems: the same errors, in ARM's shape under /api/subscriptions/
    # Oversized or deeply nested JSON is refused before it is parsed (context uploads keep their own limit).
    app.add_middleware(BodyLimits, max_body_bytes=services.settings.max_body_bytes,
                       max_json_depth=services.settings.max_json_depth)
    app.add_middleware(Audit, access=services.access)  # outermost: every response gets its request id
    root = APIRouter(prefix=API_PREFIX)  # open: health, and the API's description (no workspace data)
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authorize)])  # everything else: a caller, a role

    @root.get("/health/live", tags=["health"])
    def live() -> dict[str, str]:
        """200 while the process serves requests; nothing behind it is asked (the readiness check is /health)."""
        return {"status": "ok"}

    @root.get("/health", tags=["health"], responses={503: {"description": "a dependency is down (the same body)"}})
    def health(response: Response) -> dict[str, Any]:
        """Each port's adapter and whether it answers: 200 with `status` `ok` when every one does, else 503 with
        `degraded` (the same body)."""
        ports = services.health()
        healthy = all(p["ok"] for p in ports.values())
        if not healthy:
            response.status_code = 503
        return {"status": "ok" if healthy else "degraded", **ports}

    for module in (environments, jobs, images, deployments, scans, access, messages, arm_environments, arm_jobs,
                   arm_datastores):
        api.include_router(module.router)
    root.include_router(_docs_router(app))
    app.include_router(root)
    app.include_router(api)
    return app


def _docs_router(app: FastAPI) -> APIRouter:
    """Swagger UI at /api/docs with its assets served by this app (/api/docs-assets/...): no CDN, works offline."""
    router = APIRouter(include_in_schema=False)
    folder = Path(str(resources.files("fastapi_offline") / "static"))
    assets, redirect = f"{API_PREFIX}/docs-assets", f"{API_PREFIX}/docs/oauth2-redirect"

    @router.get("/docs")
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or f"{API_PREFIX}/openapi.json", title=f"{app.title} - API docs",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js", swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png", oauth2_redirect_url=redirect,
            swagger_ui_parameters={"validatorUrl": None})  # Swagger UI's default validator is an outside service

    @router.get("/docs/oauth2-redirect")
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/docs-assets/{name}")
    def swagger_asset(name: str) -> FileResponse:
        media_type = DOCS_ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, f"no docs asset '{name}'")
        return FileResponse(folder / name, media_type=media_type, headers={"cache-control": "public, max-age=86400"})

    return router
