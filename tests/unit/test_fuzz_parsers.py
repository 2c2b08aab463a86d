"""Fuzzing the definition path: any YAML text, any JSON value, mutated valid definitions parse or are refused."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from functions.http_api.schemas import DefinitionIn
from shared.adapters.curated_folder import FolderCatalog
from shared.domain.definition import parse_document
from shared.domain.describing import describe
from shared.domain.errors import EnvhubError
from shared.domain.records import Description
from shared.services.contexts import ContextService, Limits
from shared.services.environments import EnvironmentService
from shared.sources.local import describe_local
from shared.sources.yaml_files import load_environment_yaml
from tests.fakes.contexts import FakeContextStore
from tests.fakes.stores import FakeEnvironmentStore
from tests.support import example_yamls
from tests.unit.fuzzing import FEW, FUZZ, json_like, parses_or_refuses

IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240101.v1"
DIGEST = "sha256:" + "ab" * 32
WS = "/api/workspaces/ws"
BUILTIN = [
    {"name": "plain", "image": IMAGE},
    {"image": IMAGE, "conda_file": {"channels": ["conda-forge"], "dependencies": ["python=3.10", {"pip": ["numpy"]}]},
     "tags": {"team": "ml"}, "description": "d", "version": 3},
    {"build": {"context": DIGEST, "dockerfile_path": "docker/Dockerfile"}, "os_type": "linux"},
    {"image": IMAGE, "inference_config": {"liveness_route": {"port": 5001, "path": "/"}}, "properties": {"a": 1}},
]
# Tokens that steer arbitrary text into YAML's corners: tags, anchors, aliases, flow and block collections.
YAML_TOKENS = ["name: ", "image: ", "conda_file:", "build:", "tags:", "version: ", "dependencies:", "channels:",
               "inference_config:", "context: ", "dockerfile_path: ", "- ", "  ", "\n", ": ", "? ", "&a ", "*a",
               "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!str ", "!!null ",
               "!!map ", "!!seq ", "!!pairs ", "!custom ", "[", "]", "{", "}", ", ", "'", '"', "#", "|", ">",
               "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "2024-13-45", "2024-01-01", "0x1F", "0o17",
               "1_000", ".nan", "-.inf", "~", "yes", "1" * 4400, "é", "\t", "\\", "<<: *a", "abc", "1.5e3", "=",
               "{{latest-image-tag}}", '"\\udcff"', '"\\x00"', "sha256:" + "ab" * 32, "x" * 70_000]
# Values PyYAML's safe loader can build besides JSON's: dates, times, bytes, and keys that are not text.
YAML_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=8)
                | st.sampled_from(["\udcff", "x\ud800"])
                | st.dates() | st.datetimes(timezones=st.none() | st.just(UTC)))


def yaml_like(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    keys = st.text(max_size=10) | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False) | st.dates()
    return st.recursive(YAML_SCALARS, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(keys, kids, max_size=4), max_leaves=max_leaves)


@cache
def corpus_documents() -> tuple[dict[str, Any], ...]:
    """The corpus's example definitions as documents (build contexts by a made-up digest); none without it."""
    found = []
    for path in example_yamls():
        try:
            loaded = load_environment_yaml(path)
        except EnvhubError:
            continue
        doc = dict(loaded.document)
        if loaded.context_dir is not None:
            doc["build"] = {**doc.get("build", {}), "context": DIGEST}
        found.append(doc)
    return tuple(found)


def service() -> EnvironmentService:
    store = FakeContextStore()
    return EnvironmentService(store=FakeEnvironmentStore(), catalog=FolderCatalog(),
                              contexts=ContextService(store=store, limits=Limits(max_expanded_bytes=1 << 20,
                                                                                     max_files=100)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-yaml")
    (path / "conda.yml").write_text("dependencies: [python=3.10]\n")
    (path / "ctx").mkdir()
    (path / "ctx" / "Dockerfile").write_text(f"FROM {IMAGE}\n")
    return path


def through_yaml(folder: Path, text: str) -> Description | EnvhubError:
    path = folder / "env.yml"
    path.write_text(text, encoding="utf8")
    outcome = parses_or_refuses(lambda: describe_local(path).description)
    return outcome


def through_json(value: Any) -> Description | EnvhubError | None:
    """The HTTP path: the body model first (its refusals are FastAPI's 422), then registration."""
    try:
        body = DefinitionIn.model_validate(value)
    except ValidationError:
        return None
    svc = service()
    return parses_or_refuses(lambda: svc.register(workspace="ws", name="fuzz", document=body.document())
                             .record.description)


# --- YAML text --------------------------------------------------------------------------------------------------

@FEW
@given(st.text())
def test_any_text_as_an_environment_yaml(folder: Path, text: str) -> None:
    through_yaml(folder, text)


@FUZZ
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join))
@example("a: !!int \n")  # once an IndexError inside PyYAML
@example("a: !!timestamp 2024-13-45\n")  # once a ValueError
@example('image: x\ndescription: "\\udcff"\n')  # a YAML escape making a lone surrogate
def test_yaml_flavoured_text(folder: Path, text: str) -> None:
    through_yaml(folder, text)


# --- parsed values ----------------------------------------------------------------------------------------------

@FUZZ
@given(json_like())
def test_any_json_value_as_a_registration_body(value: Any) -> None:
    through_json(value)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(["image", "build", "conda_file", "tags", "properties", "version",
                                                "name", "description", "os_type", "inference_config"])),
                       json_like(), max_size=6))
def test_json_documents_with_known_fields(value: dict[str, Any]) -> None:
    value.setdefault("image", IMAGE)
    through_json(value)


@FUZZ
@given(yaml_like() | json_like(surrogates=True))
@example({"image": IMAGE, None: "x", "a": "y"})  # once a TypeError sorting the unknown fields
@example({"image": IMAGE, "description": "\udcff"})  # once accepted, then unstorable
def test_any_yaml_value_as_a_definition(value: Any) -> None:
    outcome = parses_or_refuses(lambda: describe(parse_document(value).definition))
    if isinstance(outcome, Description):
        outcome.model_dump_json()  # what the stores write


# --- mutated valid definitions ----------------------------------------------------------------------------------

def paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*at, index))


def mutate(doc: Any, draw: st.DrawFn) -> Any:
    """One mutation at a random place: replace a value, drop or add a key, or wrap a value in a list."""
    where = draw(st.sampled_from(list(paths(doc))))
    new = draw(yaml_like(8))
    if not where:
        return new if draw(st.booleans()) and not isinstance(doc, dict) else doc
    parent = doc
    for step in where[:-1]:
        parent = parent[step]
    last = where[-1]
    op = draw(st.sampled_from(["replace", "drop", "add", "wrap"]))
    if op == "replace":
        parent[last] = new
    elif op == "drop":
        del parent[last]
    elif op == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8) | st.sampled_from(["name", "image", "build", "path", "pip"]))] = new
    elif op == "wrap":
        parent[last] = [parent[last]]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = json.loads(json.dumps(draw(st.sampled_from(BUILTIN + list(corpus_documents())))))
    for _ in range(draw(st.integers(1, 4))):
        doc = mutate(doc, draw)
    return doc


@FUZZ
@given(mutated())
@example({"image": IMAGE, "conda_file": {"dependencies": ["x"], 1: "one", "1": "two"}})
@example({"image": IMAGE, "conda_file": {"dependencies": ["x"], "when": date(2024, 1, 1)}})
@example({"image": IMAGE, 1: "x", "a": "y"})
@example({"image": IMAGE, "inference_config": {"port": math.nan}})
@example({"image": IMAGE, "tags": {date(2024, 1, 1): b"x"}})
def test_mutated_definitions(doc: Any) -> None:
    outcome = parses_or_refuses(lambda: describe(parse_document(doc).definition))
    if not isinstance(outcome, Description) or "build" in doc:
        return
    try:
        text = json.dumps(doc)
    except (TypeError, ValueError):
        return  # YAML-only values (dates, bytes) in fields that turn them to text: the body has no JSON twin
    # Accepted: the same definition as JSON and as YAML names the same image.
    assert describe(parse_document(json.loads(text)).definition).hash == outcome.hash


@FEW
@given(mutated())
def test_mutated_definitions_as_yaml_files(folder: Path, doc: Any) -> None:
    through_yaml(folder, yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(mutated())
def test_accepted_definitions_register_once(doc: Any) -> None:
    svc = service()
    if not isinstance(doc, dict):
        return
    # The URL names them; a body naming others is refused before parsing (see the surrogate test below).
    doc = {key: value for key, value in doc.items() if key not in ("name", "version")}
    first = parses_or_refuses(lambda: svc.register(workspace="ws", name="fuzz", version="1", document=doc))
    if isinstance(first, EnvhubError):
        return
    again = svc.register(workspace="ws", name="fuzz", version="1", document=doc)
    assert (first.created, again.created) == (True, False)  # the same definition again is a no-op, not a conflict


def test_the_corpus_seeds_the_mutations() -> None:
    if not list(example_yamls()):
        pytest.skip("no corpus beside this clone: the mutations start from the built-in definitions only")
    assert corpus_documents()




def test_a_lone_surrogate_in_a_body_field_is_a_422(api: TestClient) -> None:
    response = api.post(f"{WS}/environments/x/versions", content=b'{"image": "busybox", "description": "\\udcff"}',
                        headers={"content-type": "application/json"})
    assert response.status_code == 422 and "surrogate" in response.json()["detail"]

