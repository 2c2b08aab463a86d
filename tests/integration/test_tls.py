"""`envhub serve --tls`: https with a kept local CA, trusted by the CLI, httpx, requests and azure-core."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from cli.client import Client, Unreachable, verification
from shared.adapters.local_tls import CA_VALID, SERVER_VALID, ensure, sans
from tests.support import REPO, free_port

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class Served:
    url: str
    port: int
    data: Path
    log: Path

    @property
    def ca(self) -> Path:
        return self.data / "tls" / "ca.pem"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)


@contextmanager
def serving(folder: Path, flag: str = "--tls") -> Iterator[Served]:
    """`envhub serve --tls` on a free port with its data under `folder`, up once https verifies with its CA;
    with `flag` "", ENVHUB_TLS=true asks for https instead."""
    port, registry_port = free_port(), free_port()
    served = Served(f"https://127.0.0.1:{port}", port, folder / "data", folder / f"server-{port}.log")
    with served.log.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--data-dir", str(served.data),
             "--registry-port", str(registry_port), *filter(None, [flag])], stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO, env={**os.environ, "ENVHUB_TLS": "true" if not flag else "false"})
        try:
            deadline = time.monotonic() + 30
            while not _healthy(served):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("envhub serve --tls did not start: " + served.log.read_text())
                time.sleep(0.1)
            yield served
        finally:
            process.terminate()
            process.wait(timeout=10)


def _healthy(served: Served) -> bool:
    if not served.ca.is_file():
        return False
    try:
        return httpx.get(f"{served.url}/api/health/live", verify=served.context(), timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("tls")) as served:
        yield served


def _no_ca_settings(**extra: str) -> dict[str, str]:
    """This process's environment without the CA variables (this machine may set them) or an envhub token."""
    env = {k: v for k, v in os.environ.items() if k not in CA_VARIABLES and not k.startswith("ENVHUB_")}
    return {**env, **extra}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=60)


def test_https_verifies_with_the_ca_and_the_start_says_which_ca(tls: Served) -> None:
    response = httpx.get(f"{tls.url}/api/health/live", verify=tls.context())
    assert response.status_code == 200
    log = tls.log.read_text()
    assert f"trust {tls.ca} (REQUESTS_CA_BUNDLE) for {tls.url} (a new CA)" in log
    assert f"envhub serving on {tls.url}/api (docs at /api/docs)" in log


def test_the_served_certificate_names_loopback_for_tls_servers(tls: Served) -> None:
    for name in ("127.0.0.1", "localhost"):  # hostname checks pass for both names clients use
        with socket.create_connection(("127.0.0.1", tls.port), timeout=5) as raw, \
                tls.context().wrap_socket(raw, server_hostname=name) as wrapped:
            der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    served = x509.load_der_x509_certificate(der)
    assert sans(served) >= LOOPBACK
    assert served == x509.load_pem_x509_certificate((tls.data / "tls" / "server.pem").read_bytes())
    usage = served.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert served.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    served.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > timedelta(days=3640)
    assert timedelta(days=364) < served.not_valid_after_utc - served.not_valid_before_utc < timedelta(days=366)


def test_plain_http_to_the_tls_port_fails(tls: Served) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls.port}/api/health/live", timeout=5)


def test_keys_are_readable_by_the_owner_only(tls: Served) -> None:
    folder = tls.data / "tls"
    assert folder.stat().st_mode & 0o777 == 0o700
    for key in ("ca-key.pem", "server-key.pem"):
        assert (folder / key).stat().st_mode & 0o777 == 0o600, key


@pytest.mark.parametrize("machine_cas", [False, True], ids=["no-ca-settings", "machine-ca-settings"])
def test_the_cli_trusts_the_local_ca_of_its_data_dir(tls: Served, machine_cas: bool) -> None:
    # With the machine's SSL_CERT_FILE (the system bundle) set too, the local CA is added, not ignored.
    env = {**os.environ, "ENVHUB_DATA_DIR": str(tls.data)} if machine_cas \
        else _no_ca_settings(ENVHUB_DATA_DIR=str(tls.data))
    env.pop("ENVHUB_TOKEN", None)  # the admin token comes from the data folder too
    done = _cli("list", "--url", tls.url, "--workspace", "w", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_a_cli_without_the_ca_fails_verification_in_one_line(tls: Served, tmp_path: Path) -> None:
    token = (tls.data / "admin-token").read_text().strip()
    env = _no_ca_settings(ENVHUB_DATA_DIR=str(tmp_path), ENVHUB_TOKEN=token)
    done = _cli("list", "--url", tls.url, "--workspace", "w", "--json", env=env)
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr and "REQUESTS_CA_BUNDLE" in done.stderr
    # The user's own CA setting is honoured: SSL_CERT_FILE naming the CA is enough.
    done = _cli("list", "--url", tls.url, "--workspace", "w", "--json", env={**env, "SSL_CERT_FILE": str(tls.ca)})
    assert done.returncode == 0, done.stderr


def test_requests_and_azure_core_trust_the_ca_through_requests_ca_bundle(
        tls: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.pipeline.transport import HttpRequest, RequestsTransport

    health = f"{tls.url}/api/health/live"
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(health, timeout=5)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca))
    assert requests.get(health, timeout=5).status_code == 200
    with RequestsTransport() as transport:  # what the Azure ML SDK sends its bearer tokens through
        assert transport.send(HttpRequest("GET", health)).status_code == 200


def test_a_restart_keeps_the_ca_and_the_server_certificate(tmp_path: Path) -> None:
    with serving(tmp_path) as first:
        kept = {name: _digest(first.data / "tls" / name) for name in ("ca.pem", "ca-key.pem", "server.pem")}
    with serving(tmp_path, flag="") as second:  # ENVHUB_TLS=true, as a setting
        assert {name: _digest(second.data / "tls" / name) for name in kept} == kept
        log = second.log.read_text()
        assert f"trust {second.ca} (REQUESTS_CA_BUNDLE) for {second.url}\n" in log and "(a new CA)" not in log


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("later", "remade"), [
    (timedelta(days=300), False),  # two months left: kept
    (timedelta(days=340), True),   # 25 days left: remade before clients see it expire
    (timedelta(days=400), True),   # expired
])
def test_the_server_certificate_is_remade_when_due(tmp_path: Path, later: timedelta, remade: bool) -> None:
    made = ensure(tmp_path, now=T0)
    assert made.new_ca and made.new_certificate
    before, ca = _digest(made.certificate), _digest(made.ca)
    again = ensure(tmp_path, now=T0 + later)
    assert (again.new_certificate, again.new_ca) == (remade, False)
    assert (_digest(again.certificate) != before) == remade and _digest(again.ca) == ca
    current = _certificate(again.certificate)
    assert current.not_valid_before_utc <= T0 + later < current.not_valid_after_utc - timedelta(days=30)
    assert current.not_valid_after_utc - current.not_valid_before_utc <= SERVER_VALID + timedelta(minutes=5)


def test_a_changed_ca_or_mismatched_key_remakes_the_certificate(tmp_path: Path) -> None:
    made = ensure(tmp_path / "a", now=T0)
    other = ensure(tmp_path / "b", now=T0)
    for name in ("ca.pem", "ca-key.pem"):  # another valid CA in its place
        (made.ca.parent / name).write_bytes((other.ca.parent / name).read_bytes())
    again = ensure(tmp_path / "a", now=T0)
    assert (again.new_ca, again.new_certificate) == (False, True)
    _certificate(again.certificate).verify_directly_issued_by(_certificate(other.ca))
    again.key.write_bytes(other.key.read_bytes())  # a key that does not match the certificate
    assert ensure(tmp_path / "a", now=T0).new_certificate
    made.ca.unlink()
    fresh = ensure(tmp_path / "a", now=T0)
    assert fresh.new_ca and fresh.new_certificate
    assert (made.ca.parent / "ca-key.pem").stat().st_mode & 0o777 == 0o600


def test_a_ca_near_its_end_is_remade_and_certificates_never_outlive_it(tmp_path: Path) -> None:
    ensure(tmp_path, now=T0)
    late = T0 + CA_VALID - timedelta(days=100)
    served = _certificate(ensure(tmp_path, now=late).certificate)
    assert served.not_valid_after_utc <= _certificate(tmp_path / "tls" / "ca.pem").not_valid_after_utc
    assert ensure(tmp_path, now=T0 + CA_VALID - timedelta(days=10)).new_ca
    assert ensure(tmp_path, now=T0).new_ca  # the clock went back: a CA not valid yet verifies nothing either


def test_the_served_host_is_named_too_but_not_a_wildcard(tmp_path: Path) -> None:
    assert sans(_certificate(ensure(tmp_path, host="0.0.0.0", now=T0).certificate)) == LOOPBACK
    named = ensure(tmp_path, host="envhub.test", now=T0)
    assert named.new_certificate and sans(_certificate(named.certificate)) == {*LOOPBACK, "envhub.test"}
    assert not ensure(tmp_path, now=T0).new_certificate  # loopback alone is covered already


def test_verification_is_never_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVHUB_DATA_DIR", str(tmp_path))
    assert verification("https://127.0.0.1:7071") is True  # no CA kept yet: the default trust store
    ensure(tmp_path)
    assert isinstance(verification("https://127.0.0.1:7071"), ssl.SSLContext)
    assert isinstance(verification("https://[::1]:7071"), ssl.SSLContext)
    assert verification("https://envhub.example.com") is True  # the local CA is for this machine only
    assert verification("http://127.0.0.1:7071") is True
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(Unreachable, match="cannot use the CA certificates"):
        Client("https://127.0.0.1:7071", "w").call("GET", "https://127.0.0.1:7071/api/health/live")
