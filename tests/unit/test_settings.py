"""Settings: each Azure adapter needs its endpoint, and keys or connection strings only reach emulators."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings, is_emulator

AZURITE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
           "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1")
REAL = "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=a2V5;EndpointSuffix=core.windows.net"


def test_the_local_home_needs_nothing() -> None:
    settings = Settings()
    assert (settings.store, settings.contexts, settings.queue, settings.builder) == ("sqlite", "file", "sqlite",
                                                                                    "buildah")


@pytest.mark.parametrize(("changes", "missing"), [
    ({"store": "cosmos"}, "ENVHUB_COSMOS_ENDPOINT"),
    ({"contexts": "blob"}, "ENVHUB_BLOB_ACCOUNT_URL"),
    ({"queue": "storage"}, "ENVHUB_QUEUE_ACCOUNT_URL"),
    ({"builder": "acr_tasks"}, "ENVHUB_ACR_RESOURCE_ID"),
])
def test_an_azure_adapter_without_its_endpoint_is_refused_at_start(changes: dict[str, str], missing: str) -> None:
    with pytest.raises(ValidationError, match=missing):
        Settings(**changes)  # type: ignore[arg-type]


def test_a_key_is_refused_for_a_real_cosmos_account() -> None:
    with pytest.raises(ValidationError, match="only for an emulator"):
        Settings(store="cosmos", cosmos_endpoint="https://envhub.documents.azure.com:443/", cosmos_key="a2V5")
    local = Settings(store="cosmos", cosmos_endpoint="https://127.0.0.1:8081/", cosmos_key="a2V5")
    assert local.cosmos_key == "a2V5"


def test_a_connection_string_is_refused_unless_every_endpoint_is_local() -> None:
    with pytest.raises(ValidationError, match="only for an emulator"):
        Settings(queue="storage", storage_connection_string=REAL)
    mixed = AZURITE.replace("http://127.0.0.1:10001", "https://prod.queue.core.windows.net")
    with pytest.raises(ValidationError, match="only for an emulator"):
        Settings(queue="storage", storage_connection_string=mixed)
    assert Settings(queue="storage", contexts="blob", storage_connection_string=AZURITE).queue == "storage"
    assert Settings(queue="storage", storage_connection_string="UseDevelopmentStorage=true").queue == "storage"


@pytest.mark.parametrize(("url", "local"), [("https://127.0.0.1:8081/", True), ("localhost:10000", True),
                                            ("http://[::1]:10000", True), ("https://x.documents.azure.com", False),
                                            ("https://127.0.0.1.example.org", False), (None, False)])
def test_what_counts_as_an_emulator(url: str | None, local: bool) -> None:
    assert is_emulator(url) is local


@pytest.mark.parametrize("insecure", ["registry.corp.example:5000", "10.0.0.7:5000", "localhost:5001",
                                      "myacr.azurecr.io"])
def test_plain_http_to_anything_but_loopback_is_refused_at_start(insecure: str) -> None:
    with pytest.raises(ValidationError, match="ENVHUB_INSECURE_REGISTRIES") as caught:
        Settings(insecure_registries=insecure)
    assert insecure in str(caught.value) and "TLS" in str(caught.value)
    with pytest.raises(ValidationError, match="ENVHUB_INSECURE_REGISTRIES"):
        Settings(registry=insecure, registry_kind="acr", insecure_registries=insecure)  # not even the workspace's


def test_plain_http_is_accepted_for_the_local_registry_and_loopback_addresses() -> None:
    assert Settings().insecure == {"127.0.0.1:5000"}  # the local registry
    loopback = Settings(registry="127.0.0.1:5001", insecure_registries="127.0.0.1:5001,[::1]:5002")
    assert loopback.insecure == {"127.0.0.1:5001", "[::1]:5002"}
    assert Settings(registry="team.azurecr.io").insecure == frozenset()  # TLS, verified


@pytest.mark.parametrize("entry", ["user:pw@quay.io", "quay.io/path", "*.", "169.254.169.254", "quay.io:99999"])
def test_a_malformed_allowlist_entry_is_refused_at_start(entry: str) -> None:
    with pytest.raises(ValidationError, match="ENVHUB_ALLOWED_REGISTRIES"):
        Settings(allowed_registries=f"mcr.microsoft.com,{entry}")


def test_the_allowlist_defaults_and_its_opt_out() -> None:
    assert Settings().allowed.entries == {"mcr.microsoft.com", "docker.io", "nvcr.io", "ghcr.io"}
    assert Settings(allowed_registries="*").allowed.anywhere
    assert Settings(allowed_registries="").allowed.entries == frozenset()  # only the workspace's own


@pytest.mark.parametrize("kind", ["oci", "acr"])
def test_the_breaker_takes_its_deadline_and_thresholds_from_settings(kind: str, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    from shared import factories
    from shared.adapters.circuit import CircuitBreakerRegistry

    monkeypatch.setenv("ENVHUB_REGISTRY_DEADLINE_SECONDS", "0.75")
    monkeypatch.setenv("ENVHUB_REGISTRY_BREAKER_FAILURES", "2")
    monkeypatch.setenv("ENVHUB_REGISTRY_BREAKER_COOLDOWN_SECONDS", "30")
    breaker = factories.make("registry", Settings(registry="reg.test:5000", registry_kind=kind))
    assert isinstance(breaker, CircuitBreakerRegistry)
    assert (breaker.deadline, breaker.failures, breaker.cooldown) == (0.75, 2, 30.0)
    with pytest.raises(ValidationError, match="registry_breaker_failures"):
        Settings(registry_breaker_failures=0)
