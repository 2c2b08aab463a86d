"""The HTTP API: one FastAPI app, served by uvicorn locally and by AsgiFunctionApp in Azure."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from functions.http_api import deployments, environments, images, jobs, problems, scans
from shared.bootstrap import Services

API_PREFIX = "/api"  # the Functions host's route prefix; kept locally so URLs are the same everywhere


def create_app(services: Services) -> FastAPI:
    """The API over these services; OpenAPI at /api/openapi.json, docs at /api/docs."""
    app = FastAPI(title="envhub", version="0.1.0",
                  description="Versioned environment definitions, hashed, cached and built.",
                  openapi_url=f"{API_PREFIX}/openapi.json", docs_url=f"{API_PREFIX}/docs", redoc_url=None)
    app.state.services = services
    problems.install(app)
    root = APIRouter(prefix=API_PREFIX)

    @root.get("/health/live", tags=["health"])
    def live() -> dict[str, str]:
        """200 while the process serves requests; nothing behind it is asked (the readiness check is /health)."""
        return {"status": "ok"}

    @root.get("/health", tags=["health"])
    def health() -> dict[str, Any]:
        """Each port's adapter and whether it answers; `status` is `ok` when every one does, else `degraded`."""
        ports = services.health()
        return {"status": "ok" if all(p["ok"] for p in ports.values()) else "degraded", **ports}

    root.include_router(environments.router)
    root.include_router(jobs.router)
    root.include_router(images.router)
    root.include_router(deployments.router)
    root.include_router(scans.router)
    app.include_router(root)
    return app
