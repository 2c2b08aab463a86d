"""The Builder port over ACR Tasks: upload the context, schedule a DockerBuildRequest, follow the run and its log."""

from __future__ import annotations

import dataclasses
import logging
import re
import ssl
import tempfile
import time
from typing import Any

import httpx
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential

# The versioned client of the multi-API package: the same API as ContainerRegistryManagementClient pinned to
# 2019-06-01-preview (the last version with runs and scheduleRun), but typed, so mypy checks every call.
from azure.mgmt.containerregistry.v2019_06_01_preview import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.v2019_06_01_preview.models import DockerBuildRequest, PlatformProperties, Run

from shared.adapters.archives import write_tar_gz
from shared.domain.builds import RunState, RunStatus
from shared.domain.errors import BuilderUnavailable, BuildFailed, InvalidDefinition
from shared.domain.images import DOCKER_HUB, ImageRef
from shared.domain.outbound import Allowlist
from shared.domain.plans import BuildPlan
from shared.ports import ContextSource
from shared.settings import Settings

log = logging.getLogger(__name__)

API_VERSION = "2019-06-01-preview"
MIN_TIMEOUT, MAX_TIMEOUT = 300, 28800  # what DockerBuildRequest.timeout accepts, in seconds
_RESOURCE_ID = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                          r"Microsoft\.ContainerRegistry/registries/(?P<name>[^/]+)/?$", re.I)
_STATES = {"queued": RunState.QUEUED, "started": RunState.RUNNING, "running": RunState.RUNNING,
           "succeeded": RunState.SUCCEEDED, "failed": RunState.FAILED, "error": RunState.FAILED,
           "timeout": RunState.FAILED, "canceled": RunState.CANCELLED}
_OS = {"linux": "Linux", "windows": "Windows"}
_LOG_LINK_SECONDS = 600.0  # listLogSasUrl is an ARM write-class action: reuse a link instead of asking per poll


class AcrTasksBuilder:
    """Builds in the workspace's Azure Container Registry, which pushes to itself; run ids are ACR's own."""

    name = "acr_tasks"

    def __init__(self, resource_id: str, *, credential: TokenCredential | None = None,
                 arm_endpoint: str = "https://management.azure.com", connection_verify: bool | str = True,
                 retry_total: int = 3, retry_backoff_factor: float = 0.8, timeout: float = 30.0,
                 allowed: Allowlist | None = None) -> None:
        match = _RESOURCE_ID.match(resource_id)
        if match is None:
            raise ValueError(f"'{resource_id}' is not a registry's resource id (/subscriptions/…/resourceGroups/…"
                             "/providers/Microsoft.ContainerRegistry/registries/<name>)")
        self.resource_group, self.registry_name = match["rg"], match["name"]
        endpoint = arm_endpoint.rstrip("/")
        # `connection_verify` is for tests only (a stand-in's own CA file); production verifies TLS as usual.
        self._client = ContainerRegistryManagementClient(
            credential or DefaultAzureCredential(), match["sub"], base_url=endpoint, api_version=API_VERSION,
            credential_scopes=[f"{endpoint}/.default"], connection_verify=connection_verify,
            connection_timeout=timeout, read_timeout=timeout, retry_total=retry_total,
            retry_backoff_factor=retry_backoff_factor,
        )
        # Upload and log links are SAS URLs: the signature is in the URL, so no credential goes with them.
        verify = ssl.create_default_context(cafile=connection_verify) if isinstance(connection_verify, str) \
            else connection_verify
        self._http = httpx.Client(verify=verify, timeout=httpx.Timeout(300.0, connect=timeout))
        self._log_links: dict[str, tuple[str, float]] = {}
        # ACR's build agents reach whatever the Dockerfile names; the one place to stop it is before scheduling.
        # Its Docker reads a name without a host as Docker Hub's, whatever envhub's unqualified registry is.
        self.allowed = None if allowed is None else dataclasses.replace(allowed, default_registry=DOCKER_HUB)

    @classmethod
    def from_settings(cls, settings: Settings, *, credential: TokenCredential | None = None,
                      **options: Any) -> AcrTasksBuilder:
        """The builder `settings` name (ENVHUB_ACR_RESOURCE_ID, ENVHUB_ARM_ENDPOINT)."""
        if not settings.acr_resource_id:
            raise ValueError("the acr_tasks builder needs ENVHUB_ACR_RESOURCE_ID")
        return cls(settings.acr_resource_id, credential=credential, arm_endpoint=settings.arm_endpoint,
                   **{"allowed": settings.allowed, **options})

    def close(self) -> None:
        """Close both HTTP clients."""
        self._client.close()
        self._http.close()

    def check(self) -> None:
        # One run listed: proves the endpoint, the identity and its rights on this registry's runs at once.
        # (2019-06-01-preview has no registries.get; listing runs is the cheapest read it has.)
        try:
            next(iter(self._client.runs.list(self.resource_group, self.registry_name, top=1)), None)
        except AzureError as exc:
            raise _failure(exc, "runs", bad_request_is_final=False) from exc

    def start(self, *, build_id: str, plan: BuildPlan, context: ContextSource, targets: list[ImageRef],
              platform: str, timeout: float, agent_pool: str | None) -> str:
        if not targets:
            raise ValueError("a build needs at least one target")
        os_name, _, arch = platform.lower().partition("/")
        if os_name not in _OS:
            raise BuildFailed(f"ACR Tasks builds linux or windows images, not '{platform}'", where="platform")
        try:
            if self.allowed is not None:
                self.allowed.check_dockerfile(plan.dockerfile, where=plan.dockerfile_path)
        except InvalidDefinition as error:  # the definition's fault: final, and no run is scheduled
            raise BuildFailed(error.detail, where=error.where) from error
        source = self._upload(context, build_id)
        request = DockerBuildRequest(
            source_location=source, docker_file_path=plan.dockerfile_path,
            # ACR pushes only into itself: image names carry no registry host.
            image_names=[f"{t.repository}:{t.tag or 'latest'}" for t in targets], is_push_enabled=True,
            no_cache=False, platform=PlatformProperties(os=_OS[os_name], architecture=arch or "amd64"),
            timeout=int(min(max(timeout, MIN_TIMEOUT), MAX_TIMEOUT)), agent_pool_name=agent_pool or None,
        )
        try:
            poller = self._client.registries.begin_schedule_run(self.resource_group, self.registry_name, request)
            run = poller.result(timeout=120)
        except AzureError as exc:
            raise _failure(exc, "scheduleRun", bad_request_is_final=True) from exc
        if run is None or not run.run_id:
            raise BuilderUnavailable("ACR did not report the scheduled run's id", where="scheduleRun")
        log.info("build %s is ACR run %s (%s)", build_id, run.run_id, ", ".join(request.image_names or []))
        return str(run.run_id)

    def _upload(self, context: ContextSource, build_id: str) -> str:
        """Put the context as a tar.gz where ACR says; return the relative path a run names it by."""
        try:
            where = self._client.registries.get_build_source_upload_url(self.resource_group, self.registry_name)
        except AzureError as exc:
            raise _failure(exc, "listBuildSourceUploadUrl", bad_request_is_final=False) from exc
        if not where.upload_url or not where.relative_path:
            raise BuilderUnavailable("ACR gave no upload location", where="listBuildSourceUploadUrl")
        with tempfile.TemporaryFile() as archive:  # on disk: a context may be hundreds of megabytes
            write_tar_gz(context, archive)
            size = archive.tell()
            archive.seek(0)
            try:
                # x-ms-version: a version whose Put Blob takes up to 5000 MiB in one request (older: 256 MiB).
                response = self._http.put(where.upload_url, content=archive, headers={
                    "x-ms-blob-type": "BlockBlob", "x-ms-version": "2020-04-08", "Content-Length": str(size),
                    "Content-Type": "application/gzip"})
            except httpx.HTTPError as exc:
                raise BuilderUnavailable(f"uploading the context failed: {exc}", where="upload") from exc
        if response.status_code not in (200, 201):
            raise BuilderUnavailable(f"uploading the context answered {response.status_code}", where="upload")
        log.info("build %s: uploaded %d bytes of context", build_id, size)
        return str(where.relative_path)

    def poll(self, run_id: str, log_offset: int) -> RunStatus:
        try:
            run = self._client.runs.get(self.resource_group, self.registry_name, run_id)
        except ResourceNotFoundError:
            self._log_links.pop(run_id, None)
            return RunStatus(state=RunState.LOST, log_offset=log_offset,
                             reason=f"ACR does not know run {run_id}")
        except AzureError as exc:
            raise _failure(exc, f"runs/{run_id}", bad_request_is_final=False) from exc
        status = str(run.status or "Queued")
        state = _STATES.get(status.lower())
        if state is None:  # a status newer than this API version: keep following the run
            log.warning("ACR run %s has an unknown status %r", run_id, status)
            state = RunState.RUNNING
        # A queued run has no log yet; a finished one gives up its last, unterminated line too.
        lines, offset = ([], log_offset) if state is RunState.QUEUED else self._read_log(run_id, log_offset,
                                                                                        state.finished)
        if state.finished:
            self._log_links.pop(run_id, None)
        if state is RunState.SUCCEEDED:
            return RunStatus(state=state, log=lines, log_offset=offset, digest=_digest(run))
        if state is RunState.FAILED:
            reason = run.run_error_message or ("the run timed out" if status.lower() == "timeout"
                                               else f"the ACR run ended with status {status}")
            return RunStatus(state=state, log=lines, log_offset=offset, reason=reason)
        return RunStatus(state=state, log=lines, log_offset=offset)

    def _read_log(self, run_id: str, offset: int, final: bool) -> tuple[list[str], int]:
        """Complete lines from byte `offset` on, and the offset after them (after everything when `final`)."""
        for fresh in (False, True):
            link = self._log_link(run_id, fresh)
            try:
                response = self._http.get(link, headers={"Range": f"bytes={offset}-"})
            except httpx.HTTPError as exc:
                raise BuilderUnavailable(f"reading the log of run {run_id} failed: {exc}", where="log") from exc
            if response.status_code == 403 and not fresh:
                continue  # the link's signature expired: ask for a new one, once
            break
        if response.status_code in (404, 416):  # no log yet, or nothing past the offset
            return [], offset
        if response.status_code not in (200, 206):
            raise BuilderUnavailable(f"the log of run {run_id} answered {response.status_code}", where="log")
        # A server that ignores Range sends everything: skip what was already read.
        data = response.content if response.status_code == 206 else response.content[offset:]
        end = len(data) if final else data.rfind(b"\n") + 1
        # Split bytes, not text: a multi-byte character never straddles a poll, and lines end at \n only.
        text = data[:end].decode("utf-8", errors="replace")
        lines = [line.rstrip("\r") for line in text.split("\n")]
        if lines and lines[-1] == "":
            lines.pop()
        return lines, offset + end

    def _log_link(self, run_id: str, fresh: bool) -> str:
        cached = self._log_links.get(run_id)
        if cached is not None and not fresh and time.monotonic() - cached[1] < _LOG_LINK_SECONDS:
            return cached[0]
        try:
            result = self._client.runs.get_log_sas_url(self.resource_group, self.registry_name, run_id)
        except AzureError as exc:
            raise _failure(exc, f"runs/{run_id}/listLogSasUrl", bad_request_is_final=False) from exc
        if not result.log_link:
            raise BuilderUnavailable(f"ACR gave no log link for run {run_id}", where="log")
        self._log_links[run_id] = (result.log_link, time.monotonic())
        return result.log_link

    def cancel(self, run_id: str) -> None:
        try:
            # polling=False: the POST is the request to stop; `poll` reports CANCELLED once ACR has.
            self._client.runs.begin_cancel(self.resource_group, self.registry_name, run_id, polling=False)
        except ResourceNotFoundError:
            log.info("ACR run %s is unknown; nothing to cancel", run_id)
        except AzureError as exc:
            raise _failure(exc, f"runs/{run_id}/cancel", bad_request_is_final=False) from exc


def _digest(run: Run) -> str | None:
    """The digest the run reports for its first pushed image: every target tags the one image it built."""
    images = run.output_images or []
    return str(images[0].digest) if images and images[0].digest else None


def _failure(exc: AzureError, where: str, *, bad_request_is_final: bool) -> Exception:
    """A 400 on scheduleRun is the request's own fault; anything else (network, 401/403, 429, 5xx) may pass."""
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    message = (exc.message or str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
    if status == 400 and bad_request_is_final:
        return BuildFailed(f"ACR refused the build: {message}", where=where)
    what = f"answered {status}" if status else f"failed: {type(exc).__name__}"
    return BuilderUnavailable(f"ACR Tasks {what}: {message}", where=where)
