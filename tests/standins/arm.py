"""A recording stand-in for the ARM endpoints of ACR Tasks (and the blobs they hand out), served over https."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.standins.security import make_tls

REGISTRY = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}"
_ROUTES = [(m, re.compile(p)) for m, p in (
    ("upload_url", r"POST /subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/"
                   r"registries/[^/]+/listBuildSourceUploadUrl"),
    ("schedule", r"POST /subscriptions/.+/registries/[^/]+/scheduleRun"),
    ("list_runs", r"GET /subscriptions/.+/registries/[^/]+/runs"),
    ("get_run", r"GET /subscriptions/.+/registries/[^/]+/runs/(?P<run>[^/]+)"),
    ("log_link", r"POST /subscriptions/.+/registries/[^/]+/runs/(?P<run>[^/]+)/listLogSasUrl"),
    ("cancel", r"POST /subscriptions/.+/registries/[^/]+/runs/(?P<run>[^/]+)/cancel"),
    ("put_blob", r"PUT /blobs/(?P<blob>.+)"),
    ("get_log", r"GET /logs/(?P<run>[^/]+)\.log"),
    # App Service's managed identity endpoint (IDENTITY_ENDPOINT), as a Functions app's identity reaches it
    ("msi_token", r"GET /msi/token"),
)]


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None


@dataclass
class StandInRun:
    """A run and what a test (or a runner) says about it; ACR's status names."""

    run_id: str
    request: dict[str, Any]
    source: bytes
    status: str = "Queued"
    log: bytearray = field(default_factory=bytearray)
    output_images: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    local_id: str | None = None  # the run of the builder behind the local runner
    local_offset: int = 0

    def advance(self, status: str, log: str = "", *, error: str | None = None, digest: str | None = None) -> None:
        """Scripted progress: a new status, more log text, and what the run pushed when it succeeded."""
        self.status, self.error = status, error
        self.log += log.encode()
        if digest:
            self.output_images = [{"registry": "standin", "repository": name.partition(":")[0],
                                   "tag": name.partition(":")[2], "digest": digest}
                                  for name in self.request.get("imageNames", [])]

    def resource(self, prefix: str) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).isoformat()
        properties: dict[str, Any] = {
            "runId": self.run_id, "status": self.status, "runType": "QuickBuild", "createTime": now,
            "lastUpdatedTime": now, "platform": self.request.get("platform"), "outputImages": self.output_images,
            "provisioningState": "Succeeded", "agentPoolName": self.request.get("agentPoolName")}
        if self.error:
            properties["runErrorMessage"] = self.error
        return {"id": f"{prefix}/runs/{self.run_id}", "name": self.run_id,
                "type": "Microsoft.ContainerRegistry/registries/runs", "properties": properties}


class Runner(Protocol):
    """What makes runs progress: the test's script, or a real local build."""

    def schedule(self, run: StandInRun) -> None: ...

    def refresh(self, run: StandInRun) -> None: ...

    def cancel(self, run: StandInRun) -> None: ...


class ScriptedRunner:
    """Runs move only when the test calls `StandInRun.advance`; a cancel lands at once."""

    def schedule(self, run: StandInRun) -> None:
        pass

    def refresh(self, run: StandInRun) -> None:
        pass

    def cancel(self, run: StandInRun) -> None:
        run.advance("Canceled")


@dataclass
class _Fault:
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any]
    times: int


class ArmStandIn:
    """The app: records every request, then answers it as ACR would (or with a fault a test queued)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.url = ""  # set once serving
        self.requests: list[Recorded] = []
        self.blobs: dict[str, bytes] = {}
        self.runs: dict[str, StandInRun] = {}
        self._sources: dict[str, str] = {}  # relative path -> blob name
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.add_api_route("/{path:path}", self._handle, methods=["GET", "POST", "PUT"])

    def fail(self, pattern: str, status: int, *, code: str = "Fault", message: str = "injected",
             times: int = 1) -> None:
        """Answer the next `times` requests whose "METHOD /path" matches `pattern` with an ARM error."""
        self._faults.append(_Fault(re.compile(pattern), status, {"error": {"code": code, "message": message}}, times))

    def calls(self, kind: str) -> list[Recorded]:
        """The recorded requests one of the routes answered (upload_url, schedule, get_run, …)."""
        return [r for r in self.requests if _route(f"{r.method} {r.path}")[0] == kind]

    async def _handle(self, request: Request, path: str) -> Response:
        body = await request.body()
        recorded = Recorded(request.method, "/" + path, dict(request.query_params),
                            {k.lower(): v for k, v in request.headers.items()}, body)
        line = f"{recorded.method} {recorded.path}"
        with self._lock:
            self.requests.append(recorded)
            fault = next((f for f in self._faults if f.times > 0 and f.pattern.search(line)), None)
            if fault is not None:
                fault.times -= 1
                return JSONResponse(fault.body, status_code=fault.status)
            kind, params = _route(line)
            return self._answer(kind, params, recorded)

    def _answer(self, kind: str | None, params: dict[str, str], req: Recorded) -> Response:
        prefix = req.path.split("/runs")[0].removesuffix("/scheduleRun").removesuffix("/listBuildSourceUploadUrl")
        if kind == "put_blob":
            if req.headers.get("x-ms-blob-type") != "BlockBlob":
                return _error(400, "MissingRequiredHeader", "x-ms-blob-type must be BlockBlob")
            self.blobs[params["blob"]] = req.body
            return Response(status_code=201, headers={"ETag": f'"{uuid.uuid4().hex}"'})
        if kind == "msi_token":
            if not req.headers.get("x-identity-header"):
                return _error(400, "MissingIdentityHeader", "X-IDENTITY-HEADER is required")
            return JSONResponse({"access_token": f"msi-{uuid.uuid4().hex}", "token_type": "Bearer",
                                 "expires_on": str(int(time.time()) + 3600), "resource": req.query.get("resource")})
        if kind == "get_log":
            run = self.runs.get(params["run"])
            return _error(404, "BlobNotFound", "no such blob") if run is None else _ranged(bytes(run.log), req)
        if kind == "upload_url":
            blob = f"{uuid.uuid4().hex}.tar.gz"
            relative = f"source/{dt.date.today():%Y%m%d}/{blob}"
            self._sources[relative] = blob
            return JSONResponse({"uploadUrl": f"{self.url}/blobs/{blob}?sv=2020-04-08&sig=standin",
                                 "relativePath": relative})
        if kind == "schedule":
            request = req.json or {}
            source = self.blobs.get(self._sources.get(request.get("sourceLocation", ""), ""))
            if request.get("type") != "DockerBuildRequest" or source is None:
                return _error(400, "InvalidRequest", "the request names no uploaded source or is no DockerBuildRequest")
            run = StandInRun(f"cb{len(self.runs) + 1}", request, source)
            self.runs[run.run_id] = run
            self.runner.schedule(run)
            return JSONResponse(run.resource(prefix))
        if kind == "list_runs":
            return JSONResponse({"value": [r.resource(prefix) for r in list(self.runs.values())[-1:]]})
        run = self.runs.get(params.get("run", ""))
        if kind in ("get_run", "log_link", "cancel") and run is None:
            return _error(404, "RunNotFound", f"run {params['run']} does not exist")
        assert run is not None
        if kind == "get_run":
            self.runner.refresh(run)
            return JSONResponse(run.resource(prefix))
        if kind == "log_link":
            return JSONResponse({"logLink": f"{self.url}/logs/{run.run_id}.log?sv=2020-04-08&sig=standin"})
        if kind == "cancel":
            self.runner.cancel(run)
            return Response(status_code=202)
        return _error(404, "NoRoute", f"the stand-in has no route for {req.method} {req.path}")


def _route(line: str) -> tuple[str | None, dict[str, str]]:
    for kind, pattern in _ROUTES:
        match = pattern.fullmatch(line)
        if match:
            return kind, match.groupdict()
    return None, {}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _ranged(data: bytes, req: Recorded) -> Response:
    """Serve a blob the way Blob Storage does: 206 for `Range: bytes=N-`, 416 past its end."""
    match = re.fullmatch(r"bytes=(\d+)-", req.headers.get("range", ""))
    if match is None:
        return Response(data, media_type="text/plain")
    start = int(match[1])
    if start >= len(data):
        return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
    return Response(data[start:], status_code=206, media_type="text/plain",
                    headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})


@dataclass(frozen=True)
class Served:
    """A serving stand-in: its base URL, the CA file that trusts it, and the app to script and inspect."""

    url: str
    ca_file: Path
    arm: ArmStandIn


@contextmanager
def serving(folder: Path, runner: Runner | None = None) -> Iterator[Served]:
    """Serve a stand-in over https on a free 127.0.0.1 port, in a background thread, until the block ends."""
    ca_file, cert, key = make_tls(folder)
    arm = ArmStandIn(runner or ScriptedRunner())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # the server takes this bound socket: no race for a "free" port
    arm.url = f"https://127.0.0.1:{listener.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(arm.app, log_level="warning", lifespan="off", ssl_certfile=str(cert),
                                           ssl_keyfile=str(key)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the ARM stand-in did not start")
        time.sleep(0.02)
    try:
        yield Served(arm.url, ca_file, arm)
    finally:
        server.should_exit = True
        thread.join(timeout=1)
        server.force_exit = True  # a client's idle pooled TLS connection would otherwise hold the shutdown up
        thread.join(timeout=10)
        listener.close()
