"""ARM routes for the workspace datastore: where azure-ai-ml uploads a build context before it PUTs the version."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel

from functions.http_api.arm import errors
from functions.http_api.arm.environments import At, Svc
from functions.http_api.arm.shapes import Scope
from shared.domain.arm import workspace_id
from shared.domain.datastore import DATASTORE_TYPE, NAME, Datastore, secret_lifetime
from shared.domain.errors import NotFound

DATASTORES = ("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
              "Microsoft.MachineLearningServices/workspaces/{workspace}/datastores")
DATASTORE = DATASTORES + "/{name}"
router = APIRouter(tags=["azure-ml"], responses=errors.responses(400, 401, 403, 404, 503))


class Credentials(BaseModel):
    """How a client gets access: a SAS from listSecrets."""

    credentialsType: Literal["Sas"] = "Sas"


class DatastoreProperties(BaseModel):
    """An Azure Blob datastore: the account and the workspace's own container."""

    datastoreType: Literal["AzureBlob"] = "AzureBlob"
    accountName: str
    containerName: str
    endpoint: str
    protocol: Literal["https"] = "https"
    credentials: Credentials = Credentials()
    isDefault: bool = True
    description: str = "Where Azure ML's SDK uploads build contexts for this workspace"
    tags: dict[str, str] = {}
    properties: dict[str, str] = {}


class DatastoreOut(BaseModel):
    """The one datastore of a workspace."""

    id: str
    name: str = NAME
    type: str = DATASTORE_TYPE
    properties: DatastoreProperties

    @classmethod
    def of(cls, store: Datastore, at: Scope) -> DatastoreOut:
        return cls(id=f"{workspace_id(at.subscription, at.resource_group, at.workspace)}/datastores/{NAME}",
                   properties=DatastoreProperties(accountName=store.account, containerName=store.container,
                                                  endpoint=store.endpoint))


class DatastorePage(BaseModel):
    """A workspace's datastores: its one."""

    value: list[DatastoreOut]


class Secrets(BaseModel):
    """A SAS for the workspace's container: read, create and write blobs (no list, no delete), an hour at most."""

    secretsType: Literal["Sas"] = "Sas"
    sasToken: str


def _named(name: str) -> None:
    if name != NAME:
        raise NotFound(f"no datastore '{name}': a workspace has one, '{NAME}'", where="name")


@router.get(DATASTORES, response_model=DatastorePage)
def list_datastores(at: At, svc: Svc) -> DatastorePage:
    """The workspace's datastore (what `MLClient.datastores.list()` and `get_default()` read)."""
    return DatastorePage(value=[DatastoreOut.of(svc.datastores.datastore(at.workspace), at)])


@router.get(DATASTORE, response_model=DatastoreOut)
def get_datastore(name: str, at: At, svc: Svc) -> DatastoreOut:
    """`workspaceblobstore`: the Storage account and this workspace's container (made on first use)."""
    _named(name)
    return DatastoreOut.of(svc.datastores.datastore(at.workspace), at)


@router.post(DATASTORE + "/listSecrets", response_model=Secrets)
def list_secrets(name: str, at: At, svc: Svc,
                 body: Annotated[dict[str, Any] | None, Body(description="expirableSecret, expireAfterHours")] = None
                 ) -> Secrets:
    """A short-lived SAS for the container, for contributors: the SDK uploads a folder with it, then PUTs the version
    naming that folder as `build.contextUri`."""
    _named(name)
    return Secrets(sasToken=svc.datastores.secret(at.workspace, secret_lifetime(body)))
