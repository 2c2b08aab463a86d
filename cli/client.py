"""A small client of envhub's HTTP API that turns problems into readable errors."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """The service answered with a problem."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Unreachable(Exception):
    """The service could not be reached."""


class Client:
    """Calls under {url}/api/workspaces/{workspace}."""

    def __init__(self, url: str, workspace: str, timeout: float = 60.0) -> None:
        self.base = url.rstrip("/") + "/api"
        self.workspace = workspace
        self.http = httpx.Client(timeout=timeout)

    def ws(self, path: str) -> str:
        """A URL inside the workspace."""
        return f"{self.base}/workspaces/{self.workspace}{path}"

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send a request; return the JSON body or raise ApiError/Unreachable."""
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.TransportError as error:
            raise Unreachable(f"cannot reach envhub at {self.base} ({error}); is `envhub serve` running?") from error
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("detail") or body.get("title") or response.text
            except ValueError:
                detail = response.text or response.reason_phrase
            raise ApiError(response.status_code, str(detail))
        return response.json()

    def upload_context(self, archive: bytes) -> dict[str, Any]:
        """Upload a tar.gz build context."""
        result: dict[str, Any] = self.call("POST", self.ws("/contexts"), content=archive,
                                           headers={"content-type": "application/gzip"})
        return result

    def register(self, name: str, document: dict[str, Any], version: str | None) -> dict[str, Any]:
        """Register a definition, with or without an explicit version."""
        if version is None:
            result: dict[str, Any] = self.call("POST", self.ws(f"/environments/{name}/versions"), json=document)
        else:
            result = self.call("PUT", self.ws(f"/environments/{name}/versions/{version}"), json=document)
        return result
