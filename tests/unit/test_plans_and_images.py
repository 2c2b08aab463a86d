"""Build plans and image references."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from shared.domain.builds import immutable_tag
from shared.domain.definition import parse_document
from shared.domain.errors import InvalidDefinition, NothingToBuild
from shared.domain.images import parse_image
from shared.domain.plans import CONDA_FILE, plan_for

HASH = "ab" * 32
CONDA = {"channels": ["conda-forge", "defaults"], "dependencies": ["python=3.11", {"pip": ["b", "a"]}]}


def test_system_managed_plan_has_azure_mls_two_steps() -> None:
    definition = parse_document({"image": "mcr.microsoft.com/azureml/base:1", "conda_file": CONDA}).definition
    plan = plan_for(definition, HASH)
    lines = plan.dockerfile.splitlines()
    assert lines[1] == "FROM mcr.microsoft.com/azureml/base:1"
    assert lines.index("# step 1: the base image") < lines.index(
        next(line for line in lines if line.startswith("# step 2")))
    assert f"conda env create -p /azureml-envs/azureml_{HASH[:32]}" in plan.dockerfile
    assert f"ENV PATH=/azureml-envs/azureml_{HASH[:32]}/bin:$PATH" in lines
    (conda,) = plan.generated
    assert conda.path == CONDA_FILE and yaml.safe_load(conda.content) == CONDA
    assert conda.content.index("conda-forge") < conda.content.index("defaults")  # order kept


def test_user_image_has_no_plan_and_build_needs_its_dockerfile() -> None:
    with pytest.raises(NothingToBuild, match="user's own image"):
        plan_for(parse_document({"image": "python:3.11"}).definition, HASH)
    build = parse_document({"build": {"context": "sha256:" + "0" * 64, "dockerfile_path": "d/Dockerfile"}})
    plan = plan_for(build.definition, HASH, "FROM x\n")
    assert plan.dockerfile_path == "d/Dockerfile" and plan.context_digest == "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag"),
    [
        ("busybox", "docker.io", "library/busybox", None),
        ("envhub/busybox:latest", "local:5000", "envhub/busybox", "latest"),
        ("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1", "mcr.microsoft.com",
         "azureml/openmpi4.1.0-ubuntu22.04", "20240101.v1"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", None),
        ("localhost/x:1", "localhost", "x", "1"),
    ],
)
def test_image_references_normalise_like_docker(text: str, registry: str, repository: str, tag: str | None) -> None:
    default = "local:5000" if text.startswith("envhub/") else "docker.io"
    ref = parse_image(text, default_registry=default)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)


@pytest.mark.parametrize("text", ["", "has space", "python:{{latest-image-tag}}", "UPPER/case", "x@sha256:zz"])
def test_bad_image_references(text: str) -> None:
    with pytest.raises(InvalidDefinition):
        parse_image(text)


def test_immutable_tag_is_dated_and_unique_per_build() -> None:
    when = datetime(2026, 11, 26, tzinfo=UTC)
    assert immutable_tag("0123456789abcdef", when) == "20261126.0123456789ab"
    assert immutable_tag("fedcba9876543210", when) != immutable_tag("0123456789abcdef", when)
