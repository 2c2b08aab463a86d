"""The ARM <-> definition mapping, checked against what azure-ai-ml itself sends and computes (offline)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from azure.ai.ml._utils.utils import dump_yaml
from azure.ai.ml.entities import Environment

from shared.domain.arm import (
    check_order,
    conda_yaml,
    container_archived,
    immutable_changes,
    list_view,
    merged,
    parse_version,
    plain_name,
    uploaded_context,
    version_properties,
    with_context,
)
from shared.domain.definition import parse_document
from shared.domain.describing import describe
from shared.domain.errors import InvalidDefinition
from shared.domain.records import EnvironmentRecord

CONDA: dict[str, Any] = {"name": "env", "channels": ["conda-forge"],
                         "dependencies": ["python=3.11", {"pip": ["numpy==2.0.0", "pandas"]}]}
ROUTES: dict[str, Any] = {"liveness_route": {"path": "/live", "port": 5001},
                          "readiness_route": {"path": "/ready", "port": 5001},
                          "scoring_route": {"path": "/score", "port": 5001}}
DIGEST = "sha256:" + "ab" * 32


def load(text: str, where: str) -> Any:
    return yaml.safe_load(text)


def sdk_body(**fields: Any) -> dict[str, Any]:
    """The PUT body azure-ai-ml sends for an Environment."""
    body: dict[str, Any] = Environment(**fields)._to_rest_object().as_dict()
    return body


def record(body: dict[str, Any], *, archived: bool = False) -> EnvironmentRecord:
    arm = parse_version(body, load_yaml=load)
    described = describe(parse_document(arm.document).definition)
    return EnvironmentRecord(workspace="w", name="e", version="1", description=described, archived=archived,
                             anonymous=arm.anonymous, created_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_an_sdk_body_becomes_the_cli_definition() -> None:
    body = sdk_body(name="e", image="python:3.11-slim", conda_file=CONDA, description="d", tags={"t": "1"},
                    properties={"p": "2"}, os_type="linux", inference_config=ROUTES)
    arm = parse_version(body, load_yaml=load)
    assert arm.document == {"image": "python:3.11-slim", "conda_file": CONDA, "os_type": "linux",
                            "inference_config": ROUTES, "description": "d", "tags": {"t": "1"},
                            "properties": {"p": "2"}}
    assert (arm.anonymous, arm.archived, arm.given) == (False, False, frozenset({"description", "tags", "properties"}))


def test_the_conda_yaml_is_the_sdks_own_text() -> None:
    assert conda_yaml(CONDA) == dump_yaml(CONDA, sort_keys=True)  # type: ignore[no-untyped-call]
    assert sdk_body(name="e", image="i", conda_file=CONDA)["properties"]["condaFile"] == conda_yaml(CONDA)


@pytest.mark.parametrize("fields", [
    {"image": "python:3.11-slim"},
    {"image": "python:3.11-slim", "conda_file": CONDA},
    {"image": "python:3.11-slim", "conda_file": CONDA, "inference_config": ROUTES},
])
def test_envhubs_anonymous_version_is_the_sdks_for_the_body_it_sends(fields: dict[str, Any]) -> None:
    inline = Environment(is_anonymous=True, **fields)
    stored = record(inline._to_rest_object().as_dict())
    assert stored.anonymous and stored.description.anonymous_version == inline.version


def test_a_get_answer_put_back_is_the_same_definition() -> None:
    """The archive round-trip: the SDK sends back what GET answered, read-only fields and all."""
    stored = record(sdk_body(name="e", image="python:3.11-slim", conda_file=CONDA, inference_config=ROUTES,
                             description="d", tags={"a": "b"}))
    properties = {**version_properties(stored), "isArchived": True}
    assert properties["osType"] == "Linux" and properties["environmentType"] == "UserCreated"
    answer = {"id": "/subscriptions/s/...", "name": "1", "systemData": {"createdAt": "2026-01-01T00:00:00Z"},
              "properties": properties}
    again = parse_version(answer, load_yaml=load)
    definition = parse_document(again.document).definition
    assert definition == stored.definition and again.archived is True
    assert immutable_changes(stored.definition, definition) == []
    assert merged(stored, definition, again) == stored.model_copy(update={"archived": True})


def test_only_the_fields_a_body_sets_are_merged() -> None:
    stored = record(sdk_body(name="e", image="i:1", description="kept", tags={"a": "b"}))
    arm = parse_version({"properties": {"image": "i:1", "properties": {"p": "q"}}}, load_yaml=load)
    after = merged(stored, parse_document(arm.document).definition, arm)
    d = after.definition
    assert (d.description, d.tags, d.properties, after.archived) == ("kept", {"a": "b"}, {"p": "q"}, False)
    assert after.description.hash == stored.description.hash


def test_immutable_changes_name_the_arm_properties() -> None:
    before = record(sdk_body(name="e", image="i:1", conda_file=CONDA)).definition
    after = record(sdk_body(name="e", image="i:2", os_type="windows", description="x")).definition
    assert immutable_changes(before, after) == ["image", "condaFile", "osType"]


def test_build_contexts_are_envhub_digests_or_datastore_folders() -> None:
    arm = parse_version({"properties": {"build": {"contextUri": DIGEST, "dockerfilePath": "docker/Dockerfile"}}},
                        load_yaml=load)
    assert arm.document["build"] == {"context": DIGEST, "dockerfile_path": "docker/Dockerfile"}
    assert uploaded_context(arm) is None
    uri = "https://acct.blob.example/c/LocalUpload/abc/ctx/"
    uploaded = parse_version({"properties": {"build": {"contextUri": uri}}}, load_yaml=load)
    assert uploaded_context(uploaded) == uri
    replaced = with_context(uploaded, DIGEST)
    assert replaced.document["build"] == {"context": DIGEST, "dockerfile_path": None}
    assert uploaded.document["build"]["context"] == uri  # the parsed body is left as it was
    for other in ("http://acct.blob.example/c/x/", "./ctx", "sha256:abc", 3):
        with pytest.raises(InvalidDefinition, match="neither a folder") as refused:
            parse_version({"properties": {"build": {"contextUri": other}}}, load_yaml=load)
        assert refused.value.where == "properties.build.contextUri"


@pytest.mark.parametrize(("body", "where"), [
    ({}, "properties"),
    ({"properties": []}, "properties"),
    ({"properties": {"image": "i", "isArchived": "yes"}}, "properties.isArchived"),
    ({"properties": {"image": "i", "isAnonymous": 1}}, "properties.isAnonymous"),
    ({"properties": {"image": "i", "condaFile": 3}}, "properties.condaFile"),
])
def test_malformed_bodies_say_where(body: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        parse_version(body, load_yaml=load)
    assert refused.value.where == where


def test_container_bodies_views_and_order() -> None:
    assert container_archived({"properties": {"isArchived": True, "tags": {}, "properties": {}}}) is True
    assert container_archived({"properties": {}}) is None
    assert [list_view(v) for v in (None, "ActiveOnly", "archivedonly", "ALL")] == [False, False, True, None]
    with pytest.raises(InvalidDefinition, match="listViewType"):
        list_view("Everything")
    check_order(None)
    check_order("createdtime  DESC")
    with pytest.raises(InvalidDefinition, match="newest first"):
        check_order("createdtime asc")


def test_the_azureml_prefix_the_sdk_leaves_on_a_label_is_not_part_of_the_name() -> None:
    assert [plain_name(n) for n in ("azureml:env", "AzureML:env", "env", "azureml", "azureml:")] == \
        ["env", "env", "env", "azureml", ""]
