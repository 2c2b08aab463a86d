"""The blob proxy carries https for `<account>.blob.envhub.test` to Azurite, and refuses any other host."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

from shared.adapters import local_tls
from shared.adapters.azurite import ACCOUNT, ACCOUNT_KEY, EMULATORS, Azurite
from shared.adapters.blob_proxy import BlobProxy
from tests.support import unavailable

pytestmark = pytest.mark.integration

SUFFIX = "envhub.test"


@pytest.fixture
def azurite() -> Iterator[Azurite]:
    if not EMULATORS.is_dir():
        unavailable("the emulators are not installed (`make emulators`)")
    with Azurite() as running:
        yield running


def _ca(tmp_path: Path) -> tuple[Path, Path]:
    files = local_tls.ensure(tmp_path)
    return files.ca, tmp_path / "tls" / "ca-key.pem"


def test_an_upload_through_the_proxy_lands_in_azurite(azurite: Azurite, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ca, ca_key = _ca(tmp_path)
    name = f"proxied-{uuid.uuid4().hex[:8]}"
    direct = ContainerClient.from_connection_string(azurite.connection_string, name)
    direct.create_container()
    sas = generate_container_sas(ACCOUNT, name, account_key=ACCOUNT_KEY,
                                 permission=ContainerSasPermissions(read=True, create=True, write=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    endpoint = urlparse(azurite.blob_endpoint)
    assert endpoint.hostname is not None and endpoint.port is not None
    with BlobProxy((endpoint.hostname, endpoint.port), ca, ca_key, suffix=SUFFIX) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
        proxied = ContainerClient(f"https://{ACCOUNT}.blob.{SUFFIX}", name, credential=sas)
        proxied.upload_blob("folder/model.txt", b"weights", metadata={"origin": "proxy"})
        properties = proxied.get_blob_client("folder/model.txt").get_blob_properties()
        assert properties.size == len(b"weights") and properties.metadata == {"origin": "proxy"}
        proxied.close()
        assert f"{ACCOUNT}.blob.{SUFFIX}" in proxy.connects
    monkeypatch.delenv("HTTPS_PROXY")
    blob = direct.get_blob_client("folder/model.txt")
    assert blob.download_blob().readall() == b"weights"
    assert blob.get_blob_properties().metadata == {"origin": "proxy"}
    direct.close()


@pytest.mark.parametrize("request_line", [b"CONNECT example.com:443 HTTP/1.1",
                                          b"CONNECT devstoreaccount1.blob.envhub.test:80 HTTP/1.1",
                                          b"GET http://devstoreaccount1.blob.envhub.test/ HTTP/1.1"])
def test_other_targets_are_forbidden(tmp_path: Path, request_line: bytes) -> None:
    ca, ca_key = _ca(tmp_path)
    with BlobProxy(("127.0.0.1", 9), ca, ca_key, suffix=SUFFIX) as proxy:
        address = urlparse(proxy.url)
        assert address.hostname is not None and address.port is not None
        with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
            raw.sendall(request_line + b"\r\nHost: example.com\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert proxy.connects == []
