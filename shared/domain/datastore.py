"""Azure ML's workspace datastore as envhub serves it: one upload container per workspace, and contextUri parsing."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import unquote, urlsplit

from shared.domain.context import check_member_path
from shared.domain.errors import InvalidContext, InvalidDefinition

NAME = "workspaceblobstore"  # the datastore azure-ai-ml uploads to when an environment names none
DATASTORE_TYPE = "Microsoft.MachineLearningServices/workspaces/datastores"
UPLOAD_DONE = ("upload_status", "completed")  # the metadata azure-ai-ml sets once a folder is fully uploaded
MAX_SECRET_LIFETIME = timedelta(hours=1)
WHERE = "properties.build.contextUri"
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Datastore:
    """A workspace's datastore: where its SDK uploads go (Blob Storage account and container)."""

    account: str
    container: str
    endpoint: str  # the storage suffix (core.windows.net in Azure); the SDK takes its own from cloud_metadata


@dataclass(frozen=True)
class UploadedBlob:
    """One blob of an uploaded folder, as listed."""

    name: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)


def upload_container(workspace: str, prefix: str) -> str:
    """The workspace's own container (a SAS is scoped to one container: one per workspace keeps them sealed).

    Container names are 3-63 lowercase letters, digits and single hyphens: a slug of the workspace keeps it
    recognisable, and a hash of the exact name keeps two workspaces whose slugs agree apart."""
    slug = _SLUG.sub("-", workspace.lower()).strip("-")[:32].strip("-")
    digest = hashlib.sha256(workspace.encode()).hexdigest()[:12]
    return "-".join(part for part in (prefix, slug, digest) if part)


def secret_lifetime(body: object) -> timedelta:
    """The SAS lifetime a listSecrets body asks for (`expireAfterHours`), capped at an hour."""
    hours = body.get("expireAfterHours") if isinstance(body, dict) else None
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
        return MAX_SECRET_LIFETIME
    return min(timedelta(hours=hours), MAX_SECRET_LIFETIME)


def context_folder(uri: str, store: Datastore) -> str:
    """The blob prefix (ending in '/') a version's `build.contextUri` names in the workspace's datastore.

    The URI must be `https://{account}.blob.<suffix>/{container}/{folder}/`, as azure-ai-ml writes it. The suffix is
    the client's (its cloud_metadata) and is not checked: envhub reads the folder with its own client, never from
    the URI's host."""
    parts = urlsplit(uri)
    labels = (parts.hostname or "").split(".")
    if parts.scheme != "https" or len(labels) < 3 or labels[0] != store.account.lower() or labels[1] != "blob":
        raise InvalidDefinition(
            f"the build context {uri[:200]!r} is not in this workspace's datastore: upload the folder with the SDK "
            f"(it goes to https://{store.account}.blob.<storage endpoint>/{store.container}/), or register it with "
            "`envhub register`", where=WHERE)
    container, _, folder = unquote(parts.path).lstrip("/").partition("/")
    if container != store.container:
        raise InvalidDefinition(
            f"the build context is in the container '{container}', not this workspace's '{store.container}'",
            where=WHERE)
    folder = folder.strip("/")
    if not folder:
        raise InvalidDefinition("the build context names no folder inside the container", where=WHERE)
    try:
        check_member_path(folder)
    except InvalidContext as error:
        raise InvalidDefinition(f"the build context folder is not a plain path: {error.detail}", where=WHERE) from None
    return folder + "/"


def completed(blobs: list[UploadedBlob]) -> bool:
    """Whether the SDK finished uploading the folder: it marks one file with UPLOAD_DONE at the end."""
    key, value = UPLOAD_DONE
    return any(blob.metadata.get(key) == value for blob in blobs)
