"""The registry allowlist as the domain applies it: defaults, wildcards, `*`, and the references it refuses."""

from __future__ import annotations

import pytest

from shared.domain.errors import InvalidDefinition
from shared.domain.outbound import ALLOWLIST_SETTING, Allowlist, RefusedRegistry, registry_of
from shared.settings import Settings

LOCAL = "127.0.0.1:5000"
DEFAULTS = Allowlist.parse(None, home=(LOCAL,), default_registry=LOCAL)


@pytest.mark.parametrize("reference", [
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1", "docker.io/library/python:3.11",
    "nvcr.io/nvidia/pytorch:24.01-py3", "ghcr.io/org/tool@sha256:" + "a" * 64, f"{LOCAL}/envhub/busybox",
    "busybox",  # no host: the default registry (here the local one)
    "mcr.microsoft.com/azureml/base:{{latest-image-tag}}",  # a template in the tag leaves the host as written
])
def test_the_defaults_allow_the_public_registries_and_the_workspace_one(reference: str) -> None:
    assert DEFAULTS.check_reference(reference, where="image") == registry_of(reference, LOCAL)


@pytest.mark.parametrize(("reference", "words"), [
    ("quay.io/org/app:1", ["not on the allowlist", "quay.io"]),
    ("127.0.0.1:6000/app:1", ["loopback or private"]),  # loopback, but not the workspace's registry
    ("localhost:5000/app:1", ["loopback or private"]),
    ("10.1.2.3/app:1", ["loopback or private"]),
    ("[::1]:5000/app", ["loopback or private"]),
    ("169.254.169.254/latest:1", ["link-local"]),
    ("127.1/app", ["non-standard form"]),
    ("user:secret@quay.io/app:1", ["user information"]),
    ("file:///srv/secret.key", ["file://"]),
    ("http://mcr.microsoft.com/app", ["http://"]),
    ("docker://mcr.microsoft.com/app", ["docker://"]),
    ("oci-archive:base.tar", ["oci-archive:"]),
    ("containers-storage:app", ["containers-storage:"]),
])
def test_refused_references_name_the_setting_and_the_place(reference: str, words: list[str]) -> None:
    with pytest.raises(RefusedRegistry) as caught:
        DEFAULTS.check_reference(reference, where="environment#image")
    assert isinstance(caught.value, InvalidDefinition)  # a 422, like every definition error
    assert caught.value.where == "environment#image" and ALLOWLIST_SETTING in caught.value.detail
    for word in words:
        assert word in caught.value.detail
    assert "secret" not in str(caught.value)


def test_wildcards_match_subdomains_only_and_ports_exactly() -> None:
    allowed = Allowlist.parse("*.azurecr.io, registry.corp:8443", home=("home.azurecr.io",))
    assert allowed.refusal("team.azurecr.io") is None and allowed.refusal("a.b.azurecr.io") is None
    assert allowed.refusal("azurecr.io") is not None and allowed.refusal("evil-azurecr.io") is not None
    assert allowed.refusal("team.azurecr.io:5000") is not None
    assert allowed.refusal("registry.corp:8443") is None and allowed.refusal("registry.corp") is not None
    assert allowed.refusal("mcr.microsoft.com") is not None  # a list replaces the defaults


def test_star_allows_any_public_registry_but_nothing_local() -> None:
    anywhere = Allowlist.parse("*", home=(LOCAL,))
    assert anywhere.refusal("quay.io") is None and anywhere.refusal(LOCAL) is None
    for local in ("127.0.0.1:6000", "localhost", "192.168.1.5", "169.254.169.254"):
        assert anywhere.refusal(local) is not None


def test_ip_literal_entries_are_allowed_and_exempt_from_the_address_check() -> None:
    allowed = Allowlist.parse("127.0.0.1:6000,10.0.0.7,*.corp.example,mirror.corp.example", home=("acr.azurecr.io",))
    assert allowed.refusal("127.0.0.1:6000") is None and allowed.refusal("10.0.0.7") is None
    assert allowed.exempt == {"127.0.0.1:6000", "10.0.0.7", "acr.azurecr.io"}  # never a name off the home
    assert allowed.exact == {"127.0.0.1:6000", "10.0.0.7", "mirror.corp.example", "acr.azurecr.io"}


DOCKERFILE = """\
ARG BASE=quay.io/org/base
FROM mcr.microsoft.com/azureml/base:1 AS build
RUN --mount=type=cache,target=/root/.cache echo ok
COPY --from=build /a /b
FROM ${BASE}:2
COPY --from=ghcr.io/org/tools:1 /t /t
"""


def test_a_dockerfile_is_checked_line_by_line() -> None:
    with pytest.raises(RefusedRegistry) as caught:
        DEFAULTS.check_dockerfile(DOCKERFILE, where="build context: Dockerfile")
    # The base written through an ARG is reported at the FROM that uses it.
    assert caught.value.where == "build context: Dockerfile, line 5" and "quay.io" in caught.value.detail
    listed = Allowlist.parse("mcr.microsoft.com,ghcr.io,quay.io")
    assert listed.check_dockerfile(DOCKERFILE, where="Dockerfile") == ["ghcr.io", "mcr.microsoft.com", "quay.io"]


def test_images_that_copy_and_mount_pull_are_checked_too() -> None:
    for text, line in (("FROM busybox\nCOPY --from=quay.io/x:1 /a /b\n", 2),
                       ("FROM busybox\nRUN --mount=type=bind,from=quay.io/x:1,target=/m true\n", 2)):
        with pytest.raises(RefusedRegistry) as caught:
            DEFAULTS.check_dockerfile(text, where="Dockerfile")
        assert caught.value.where == f"Dockerfile, line {line}" and "quay.io" in caught.value.detail


def test_settings_build_the_list_with_the_workspace_registry() -> None:
    local = Settings()
    assert local.allowed.refusal(local.registry_host) is None and local.allowed.refusal("quay.io") is not None
    remote = Settings(registry="team.azurecr.io", registry_kind="acr", allowed_registries="*.corp.example",
                      unqualified_registry="mirror.corp.example")
    assert remote.allowed.refusal("team.azurecr.io") is None and remote.allowed.refusal("mirror.corp.example") is None
    assert remote.allowed.refusal("mcr.microsoft.com") is not None
    assert remote.allowed.default_registry == "mirror.corp.example"
