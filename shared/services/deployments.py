"""Deployments: the assets that run an environment's image, and the image digest each one runs."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from pydantic import ValidationError

from shared.domain import naming
from shared.domain.errors import InvalidDefinition, NotFound, VersionConflict
from shared.domain.scans import Deployment
from shared.ports import DeploymentStore, Page
from shared.services.images import ImageService
from shared.services.jobs import JobService

log = logging.getLogger(__name__)
KINDS = ("online", "batch")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
ENDPOINT_MAX = 2048
_ENDPOINT_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


class InvalidDeployment(InvalidDefinition):
    """A deployment request breaks a rule (a 422 naming the field)."""

    slug = "invalid-deployment"


class ImageNotBuilt(VersionConflict):
    """The environment's image does not exist yet, so there is no digest to record (a 409)."""

    slug = "image-not-built"


@dataclass(frozen=True)
class SetDeployment:
    """A set's outcome: the stored deployment, and whether this call created it (else it replaced one)."""

    deployment: Deployment
    created: bool


class DeploymentService:
    """Create or replace, read, list and delete a workspace's deployments."""

    def __init__(self, *, store: DeploymentStore, jobs: JobService, images: ImageService,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.jobs = jobs
        self.images = images
        self.clock = clock

    def set(self, *, workspace: str, name: str, environment: str, image_digest: str | None = None,
            endpoint: str | None = None, kind: str = "online") -> SetDeployment:
        """Record that `name` runs `environment` (`name:version`, `azureml:name:version` or `name@latest`,
        stored as the concrete version) from `image_digest`, or from the environment's current image when no
        digest is given. Setting a deployment is deploying it: any redeploy flag is cleared."""
        naming.check_name(workspace, where="workspace")
        naming.check_name(name, where="name")
        if kind not in KINDS:
            raise InvalidDeployment(f"the kind is 'online' or 'batch', not {kind!r}", where="kind")
        if image_digest is not None and not DIGEST.fullmatch(image_digest):
            raise InvalidDeployment(f"{image_digest!r} is not an image digest: use 'sha256:' and 64 lowercase hex "
                                    "digits", where="image_digest")
        if endpoint is not None:
            _check_endpoint(endpoint)
        if not isinstance(environment, str) or not environment:
            raise InvalidDeployment("name the environment as 'name:version' or 'name@latest'", where="environment")
        record = self.jobs.resolve_reference(workspace, environment)  # 422 when malformed, 404 when missing
        if image_digest is None:
            image_digest = self.images.current_digest(record)
            if image_digest is None:
                raise ImageNotBuilt(
                    "the environment's image does not exist yet; build it (POST .../image) or give image_digest",
                    where="image_digest")
        now = self.clock()
        deployment = Deployment(workspace=workspace, name=name, environment_name=record.name,
                                environment_version=record.version, image_digest=image_digest, endpoint=endpoint,
                                kind=cast(Literal["online", "batch"], kind), needs_redeploy=False,
                                redeploy_reason=None, created_at=now, updated_at=now)
        before = self.store.get(workspace, name)
        stored = self.store.put(deployment)
        # A deployment created meanwhile by another call keeps its own created_at: then this call replaced it.
        created = before is None and stored.created_at == deployment.created_at
        log.info("%s deployment %s in %s: %s@%s", "created" if created else "replaced", name, workspace,
                 deployment.environment, image_digest)
        return SetDeployment(stored, created)

    def get(self, *, workspace: str, name: str) -> Deployment:
        """One deployment; NotFound when there is none."""
        deployment = self.store.get(workspace, name)
        if deployment is None:
            raise NotFound(f"no deployment '{name}' in workspace '{workspace}'", where=name)
        return deployment

    def list(self, *, workspace: str, top: int, cursor: str | None = None,
             needs_redeploy: bool | None = None) -> Page[Deployment]:
        """A page of the workspace's deployments by name, optionally only those flagged (or not) for redeploy."""
        if top < 1:
            raise InvalidDeployment(f"a page holds at least one deployment, not {top}", where="$top")
        try:
            return self.store.list_deployments(workspace, top=top, cursor=cursor, needs_redeploy=needs_redeploy)
        except ValueError as error:
            if isinstance(error, ValidationError):  # a stored record that does not parse is not the caller's fault
                raise
            raise InvalidDeployment("not a $skiptoken this service handed out; start from the first page",
                                    where="$skiptoken") from error

    def delete(self, *, workspace: str, name: str) -> None:
        """Remove a deployment; NotFound when there is none."""
        if not self.store.delete(workspace, name):
            raise NotFound(f"no deployment '{name}' in workspace '{workspace}'", where=name)
        log.info("deleted deployment %s in %s", name, workspace)


def _check_endpoint(endpoint: object) -> None:
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidDeployment("the endpoint, when given, is a non-empty string", where="endpoint")
    if len(endpoint) > ENDPOINT_MAX:
        raise InvalidDeployment(f"the endpoint has {len(endpoint)} characters; at most {ENDPOINT_MAX}",
                                where="endpoint")
    bad = _ENDPOINT_FORBIDDEN.search(endpoint)
    if bad:
        raise InvalidDeployment(f"the endpoint contains {bad.group()!r}, which is not allowed", where="endpoint")
