"""BlobUploadArea as in Azure (no account key): user-delegation SAS from Azurite with OAuth over HTTPS."""

from __future__ import annotations

import base64
import json
import re
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.adapters import local_tls
from shared.adapters.azurite import ACCOUNT, EMULATORS
from shared.adapters.blob_contexts import client_options
from shared.adapters.blob_uploads import BlobUploadArea
from shared.adapters.children import die_with_parent
from tests.support import unavailable

pytestmark = pytest.mark.integration

# What Azurite (3.37, `--oauth basic`) checks, read from its source (blob/authentication/*.js):
#   enforced: a bearer token only over HTTPS, with nbf/iat/exp current, an Entra issuer prefix and a storage
#   audience; a user-delegation SAS's signature (so its sp, sr, container, times and protocol cannot be changed),
#   its st/se and skt/ske windows, sks == "b", and the per-operation permission (l to list, d to delete, ...).
#   NOT checkable here: the token's signature and any RBAC role (every well-formed token may do anything, and
#   may ask for a delegation key); that a delegation key was issued at all (Azurite derives it from
#   skoid/sktid/skt/ske/skv and a public seed, so anyone can forge one); that se <= ske, or ske within 7 days;
#   spr=https against a plain-http request (this server only speaks HTTPS). Those rest on Azure alone.

CONTAINER = "uploads-ws-abc"
OTHER = "uploads-ws-other"
LIFETIME = timedelta(hours=2)
PREFIX = "LocalUpload/0123abcd/ctx"
_LISTENING = re.compile(r"Azurite Blob service successfully listens on (https://\S+)")  # blob/main.js


class FakeEntraToken:
    """A TokenCredential standing in for the managed identity: an unsigned JWT that Azurite's `--oauth basic`
    accepts (it checks aud, an Entra issuer prefix, nbf/iat/exp, never the signature) and whose oid/tid become
    the user-delegation key's skoid/sktid."""

    def __init__(self) -> None:
        self.oid, self.tid = str(uuid.uuid4()), str(uuid.uuid4())

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        now = int(time.time())
        claims_set = {"aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{self.tid}/",
                      "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "oid": self.oid, "tid": self.tid}
        token = ".".join(_b64url(json.dumps(part).encode())
                         for part in ({"alg": "none", "typ": "JWT"}, claims_set)) + "."
        return AccessToken(token, now + 3600)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class OAuthAzurite:
    url: str  # https://127.0.0.1:<port>/devstoreaccount1
    ca: str  # the CA that signed Azurite's certificate, for connection_verify


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthAzurite]:
    """azurite-blob alone, over HTTPS with `--oauth basic` (user-delegation keys need OAuth, OAuth needs HTTPS)."""
    node, script = shutil.which("node"), EMULATORS / "azurite-blob"
    if node is None or not script.exists():
        unavailable("node or Azurite is not installed (`make emulators`)")
    folder = tmp_path_factory.mktemp("azurite-oauth")
    tls = local_tls.ensure(folder)
    log_path = folder / "azurite.log"
    args = [node, str(script), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
            "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry",
            "--oauth", "basic", "--cert", str(tls.certificate), "--key", str(tls.key)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
            preexec_fn=die_with_parent)
    try:
        yield OAuthAzurite(f"{_wait(process, log_path, tls.ca)}/{ACCOUNT}", str(tls.ca))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(process: subprocess.Popen[bytes], log: Path, ca: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = _LISTENING.search(log.read_text(errors="replace"))
        if found and _answers(found[1], ca):
            return found[1].rstrip("/")
        if process.poll() is not None:
            raise RuntimeError(f"azurite-blob exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"azurite-blob did not answer within {timeout:.0f}s:\n{log.read_text()}")
        time.sleep(0.05)


def _answers(url: str, ca: Path) -> bool:
    try:
        # Any HTTP answer will do (unauthenticated, it is a 4xx).
        httpx.get(url, timeout=1, verify=ssl.create_default_context(cafile=ca))
    except httpx.TransportError:
        return False
    return True


@pytest.fixture(scope="module")
def area(azurite: OAuthAzurite) -> BlobUploadArea:
    service = BlobServiceClient(azurite.url, credential=FakeEntraToken(), connection_verify=azurite.ca,
                                **client_options())
    return BlobUploadArea(service, account_key=None, endpoint="x")


@pytest.fixture(scope="module")
def sas(area: BlobUploadArea) -> str:
    area.ensure_container(CONTAINER)
    return area.sas(CONTAINER, lifetime=LIFETIME)


def _holder(azurite: OAuthAzurite, container: str, sas: str) -> ContainerClient:
    """What the SDK holds: the container's URL and the SAS, nothing else."""
    return ContainerClient(azurite.url, container, credential=sas, connection_verify=azurite.ca)


def _refused(code: str, call: Any, *args: Any) -> None:
    """The call fails with a 403 and Azure's error code for why (a signature that does not verify is an
    AuthorizationFailure; a valid SAS without the permission the operation needs, AuthorizationPermissionMismatch)."""
    with pytest.raises(HttpResponseError) as refused:
        call(*args)
    code_given = getattr(refused.value, "error_code", None)  # the storage SDK sets it from x-ms-error-code
    assert (refused.value.status_code, code_given) == (403, code), refused.value.message


def test_sas_is_a_user_delegation_sas_for_read_create_write_over_https(area: BlobUploadArea) -> None:
    area.ensure_container(CONTAINER)
    before = datetime.now(UTC).replace(microsecond=0)  # a SAS's times are whole seconds
    sas = area.sas(CONTAINER, lifetime=LIFETIME)
    after = datetime.now(UTC)
    fields = {name: values[0] for name, values in parse_qs(sas).items()}
    credential = area.service.credential
    assert isinstance(credential, FakeEntraToken)
    assert (fields["skoid"], fields["sktid"]) == (credential.oid, credential.tid)  # the identity that asked
    assert {"skt", "ske", "sks", "skv", "sig"} <= fields.keys()
    assert (fields["sks"], fields["sr"], fields["sp"], fields["spr"]) == ("b", "c", "rcw", "https")
    expiry, key_expiry = _time(fields["se"]), _time(fields["ske"])
    assert before + LIFETIME <= expiry <= after + LIFETIME
    assert key_expiry == expiry  # the delegation key lives exactly as long as the SAS signed with it
    assert _time(fields["st"]) < before  # started a little in the past, for clients whose clocks lag


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_sas_holder_can_upload_mark_and_read_but_not_list_delete_or_leave(
        area: BlobUploadArea, azurite: OAuthAzurite, sas: str) -> None:
    holder = _holder(azurite, CONTAINER, sas)
    blob = holder.get_blob_client(f"{PREFIX}/Dockerfile")
    blob.upload_blob(b"FROM busybox\n", overwrite=True)
    blob.set_blob_metadata({"upload_status": "completed"})
    properties = blob.get_blob_properties()
    assert properties.size == len(b"FROM busybox\n")
    assert properties.metadata == {"upload_status": "completed"}

    _refused("AuthorizationPermissionMismatch", lambda: next(iter(holder.list_blobs())))  # no l in sp
    _refused("AuthorizationPermissionMismatch", holder.delete_blob, f"{PREFIX}/Dockerfile")  # no d in sp
    area.ensure_container(OTHER)  # it exists: a 403, not a 404, is what keeps the SAS to its own container
    _refused("AuthorizationFailure", _holder(azurite, OTHER, sas).upload_blob, "intruder", b"x")
    # The signature covers the permissions: widening sp after signing breaks it (Azurite recomputes the
    # user-delegation key from skoid/sktid/skt/ske/skv and checks sig, so this proves the SAS is verified at all).
    widened_sas = sas.replace("sp=rcw&", "sp=rcwdl&")
    assert widened_sas != sas
    widened = _holder(azurite, CONTAINER, widened_sas)
    _refused("AuthorizationFailure", lambda: next(iter(widened.list_blobs())))
    _refused("AuthorizationFailure", widened.delete_blob, f"{PREFIX}/Dockerfile")
    assert blob.download_blob().readall() == b"FROM busybox\n"  # still there
    assert area.folder(OTHER, "", limit=10) == []
    assert [b.name for b in area.folder(CONTAINER, PREFIX, limit=10)] == [f"{PREFIX}/Dockerfile"]


def test_managed_identity_lists_and_reads_what_was_uploaded(
        area: BlobUploadArea, azurite: OAuthAzurite, sas: str) -> None:
    holder = _holder(azurite, CONTAINER, sas)
    files = {f"{PREFIX}/Dockerfile": b"FROM busybox\nCOPY app /app\n", f"{PREFIX}/app/main.py": b"print(1)\n"}
    for name, data in files.items():
        holder.upload_blob(name, data, overwrite=True, metadata={"upload_status": "completed"})

    found = {blob.name: blob for blob in area.folder(CONTAINER, PREFIX, limit=10)}
    assert found.keys() == files.keys()
    for name, data in files.items():
        assert found[name].size == len(data)
        assert found[name].metadata == {"upload_status": "completed"}
        with area.open(CONTAINER, name) as reader:
            assert reader.read() == data
    assert area.folder(CONTAINER, "LocalUpload/elsewhere", limit=10) == []
