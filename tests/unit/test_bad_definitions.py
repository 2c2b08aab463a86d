"""A table of bad definitions, names, Dockerfiles, YAML files and contexts, and the errors they raise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.domain import naming
from shared.domain.definition import parse_document
from shared.domain.dockerfile import base_images
from shared.domain.errors import EnvhubError, InvalidContext, InvalidDefinition, ReservedName
from shared.sources.folders import ContextFolder
from shared.sources.yaml_files import load_environment_yaml, read_yaml

IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
DIGEST = "sha256:" + "ab" * 32
ENV_YAML = "env/environment.yml"


@dataclass(frozen=True)
class Name:
    value: object


@dataclass(frozen=True)
class Version:
    value: object


@dataclass(frozen=True)
class Dockerfile:
    text: str


@dataclass(frozen=True)
class YamlText:
    text: str


@dataclass(frozen=True)
class Link:
    target: str


Tree = dict[str, str | Link]


@dataclass(frozen=True)
class EnvFiles:
    tree: Tree


@dataclass(frozen=True)
class ContextTree:
    tree: Tree


Case = dict[str, Any] | list[Any] | Name | Version | Dockerfile | YamlText | EnvFiles | ContextTree


def _image(**fields: Any) -> dict[str, Any]:
    return {"name": "env", "image": IMAGE, **fields}


def _conda(**conda: Any) -> dict[str, Any]:
    return _image(conda_file={"channels": ["conda-forge"], "dependencies": ["python=3.11"], **conda})


def _build(**build: Any) -> dict[str, Any]:
    return {"name": "env", "build": {"context": DIGEST, **build}}


def _env(yaml_text: str, tree: Tree | None = None) -> EnvFiles:
    return EnvFiles({ENV_YAML: yaml_text, **(tree or {})})



def _write(root: Path, tree: Tree) -> None:
    links = []
    for rel, content in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            links.append((path, root / content.target))
        else:
            path.write_text(content, encoding="utf8")
    for path, target in links:
        os.symlink(target, path, target_is_directory=target.is_dir())


def _run(case: Case, tmp_path: Path) -> object:
    if isinstance(case, Name):
        return naming.check_user_name(case.value)
    if isinstance(case, Version):
        return naming.check_version(case.value)
    if isinstance(case, Dockerfile):
        return base_images(case.text)
    if isinstance(case, YamlText):
        path = tmp_path / "definition.yml"
        path.write_text(case.text, encoding="utf8")
        return parse_document(read_yaml(path))
    if isinstance(case, EnvFiles):
        _write(tmp_path, case.tree)
        return load_environment_yaml(tmp_path / ENV_YAML)
    if isinstance(case, ContextTree):
        _write(tmp_path, case.tree)
        return ContextFolder(tmp_path / "ctx")
    return parse_document(case)


ROWS = [
    pytest.param({"image": IMAGE, "build": {"context": DIGEST}}, InvalidDefinition, "not both", "build",
                 id="image-and-build"),
    pytest.param({"name": "env"}, InvalidDefinition, "exactly one of 'image' and 'build'", "image",
                 id="neither-image-nor-build"),
    pytest.param(_build() | {"conda_file": {"dependencies": ["python"]}}, InvalidDefinition,
                 "'conda_file' goes with 'image'", "conda_file", id="conda-with-build"),
    pytest.param(_image(imagee="x"), InvalidDefinition, "unknown field(s) imagee", "imagee", id="unknown-field"),
    pytest.param(_build(dockerfile="Dockerfile"), InvalidDefinition, "unknown build field(s) dockerfile",
                 "build.dockerfile", id="unknown-build-field"),
    pytest.param([_image()], InvalidDefinition, "a mapping of fields", "<document>", id="document-a-list"),
    pytest.param(_image(name="my env"), InvalidDefinition, "is not a valid name", "name", id="name-space"),
    pytest.param(_image(name="team/env"), InvalidDefinition, "is not a valid name", "name", id="name-slash"),
    pytest.param(_image(name="-env"), InvalidDefinition, "is not a valid name", "name", id="name-leading-dash"),
    pytest.param(_image(name="a" * 256), InvalidDefinition, "256 characters; at most 255", "name",
                 id="name-256-chars"),
    pytest.param(_image(name=""), InvalidDefinition, "a name is required", "name", id="name-empty"),
    pytest.param(_image(name="env\n"), InvalidDefinition, "is not a valid name", "name",
           id="name-trailing-newline"),
    pytest.param(Name("azureml-foo"), ReservedName, "reserved for curated environments", "name",
                 id="reserved-azureml-lower"),
    pytest.param(Name("AZUREML-x"), ReservedName, "reserved for curated environments", "name",
                 id="reserved-azureml-upper"),
    pytest.param(Name("AzureML-Minimal"), ReservedName, "reserved for curated environments", "name",
                 id="reserved-azureml-mixed"),
    pytest.param(Name("MicrosoftFoo"), ReservedName, "reserved for curated environments",
                 "name", id="reserved-microsoft-camel"),
    pytest.param(Name("microsoft-x"), ReservedName, "reserved for curated environments", "name",
                 id="reserved-microsoft-lower"),
    pytest.param(Name("CliV2AnonymousEnvironment"), ReservedName, "holds anonymous environments", "name",
                 id="anonymous-name"),
    pytest.param(Name("clIV2anonymousENVIRONMENT"), ReservedName, "holds anonymous environments", "name",
                 id="anonymous-name-any-case"),
    pytest.param(Name("a b"), InvalidDefinition, "is not a valid name", "name", id="user-name-space"),
    pytest.param(_image(version="latest"), InvalidDefinition, "'latest' is a label", "version",
                 id="version-latest"),
    pytest.param(_image(version="LATEST"), InvalidDefinition, "'latest' is a label", "version",
                 id="version-LATEST"),
    pytest.param(_image(version=""), InvalidDefinition, "the version is empty", "version", id="version-empty"),
    pytest.param(_image(version="1:2"), InvalidDefinition, "contains ':'", "version", id="version-colon"),
    pytest.param(_image(version="1/2"), InvalidDefinition, "contains '/'", "version", id="version-slash"),
    pytest.param(_image(version="v@1"), InvalidDefinition, "contains '@'", "version", id="version-at"),
    pytest.param(_image(version="1 2"), InvalidDefinition, "contains ' '", "version", id="version-space"),
    pytest.param(_image(version=[1]), InvalidDefinition, "a version is a string or a number", "version",
                 id="version-list"),
    pytest.param(Version(True), InvalidDefinition, "a version is a string or a number", "version",
                 id="version-bool"),
    pytest.param(Version("1\n"), InvalidDefinition, "contains '\\n'", "version", id="version-newline"),
    pytest.param(_image(os_type="macos"), InvalidDefinition, "os_type is one of linux, windows", "os_type",
                 id="os-type-macos"),
    pytest.param(_image(tags=["gpu", "cuda"]), InvalidDefinition, "mapping of names to values", "tags",
                 id="tags-list"),
    pytest.param(_image(tags={"team": {"lead": "ann"}}), InvalidDefinition, "not lists or mappings", "tags.team",
                 id="tag-value-mapping"),
    pytest.param(_image(properties={"k": ["v"]}), InvalidDefinition, "not lists or mappings", "properties.k",
                 id="property-value-list"),
    pytest.param(_image(description=42), InvalidDefinition, "must be text", "description", id="description-number"),
    pytest.param(_image(image="python 3.11"), InvalidDefinition, "no spaces", "image", id="image-space"),
    pytest.param(_image(image=""), InvalidDefinition, "image reference", "image", id="image-empty"),
    pytest.param(_image(image=["python:3.11"]), InvalidDefinition, "image reference", "image", id="image-list"),
    pytest.param({"name": "env", "build": DIGEST}, InvalidDefinition, "'build' is a mapping", "build",
                 id="build-not-mapping"),
    pytest.param({"name": "env", "build": {"path": "./context"}}, InvalidDefinition, "upload it", "build.path",
                 id="build-path-without-context"),
    pytest.param(_build(context="my-context"), InvalidDefinition, "must be a context digest", "build.context",
                 id="build-context-not-digest"),
    pytest.param(_build(context="sha256:abc"), InvalidDefinition, "must be a context digest", "build.context",
                 id="build-context-short-digest"),
    pytest.param(_build(context="sha256:" + "g" * 64), InvalidDefinition, "must be a context digest", "build.context",
           id="build-context-not-hex"),
    pytest.param(_build(dockerfile_path="../Dockerfile"), InvalidDefinition, "outside the build context",
                 "build.dockerfile_path", id="dockerfile-path-parent"),
    pytest.param(_build(dockerfile_path="/abs/Dockerfile"), InvalidDefinition, "outside the build context",
                 "build.dockerfile_path", id="dockerfile-path-absolute"),
    pytest.param(_build(dockerfile_path="docker/../../Dockerfile"), InvalidDefinition, "outside the build context",
                 "build.dockerfile_path", id="dockerfile-path-escapes-after-normalising"),
    pytest.param(_build(dockerfile_path=""), InvalidDefinition, "non-empty relative path", "build.dockerfile_path",
                 id="dockerfile-path-empty"),
    pytest.param(_image(conda_file=["python=3.11"]), InvalidDefinition, "non-empty mapping", "conda_file",
                 id="conda-list"),
    pytest.param(_image(conda_file={}), InvalidDefinition, "non-empty mapping", "conda_file", id="conda-empty"),
    pytest.param(_conda(channels="conda-forge"), InvalidDefinition, "'channels' is a list", "conda_file.channels",
                 id="conda-channels-string"),
    pytest.param(_conda(dependencies="numpy"), InvalidDefinition, "'dependencies' is a list",
                 "conda_file.dependencies", id="conda-dependencies-string"),
    pytest.param(_conda(dependencies=["pip", {"pip": "numpy"}]), InvalidDefinition,
                 "'pip' is a list of package specifications", "conda_file.dependencies[1]", id="pip-not-list"),
    pytest.param(_conda(dependencies=[None]), InvalidDefinition, "a dependency is a package specification",
                 "conda_file.dependencies[0]", id="conda-dependency-null"),
    pytest.param(_image(inference_config=[{"port": 5001}]), InvalidDefinition, "must be a mapping",
                 "inference_config", id="inference-config-list"),
    pytest.param(YamlText("name: env\nimage: python\nconda_file:\n\tdependencies: []\n"), InvalidDefinition,
                 "malformed YAML", "definition.yml:4:1", id="yaml-tab-indentation"),
    pytest.param(YamlText("name: env\nimage: [python\nversion: 1\n"), InvalidDefinition, "malformed YAML",
                 "definition.yml:3:8", id="yaml-unclosed-bracket"),
    pytest.param(YamlText("name: env\nimage: python\ntags: [gpu]\n"), InvalidDefinition, "mapping of names",
                 "tags", id="yaml-tags-list"),
    pytest.param(Dockerfile("RUN echo hi\n"), InvalidDefinition, "no FROM instruction", "Dockerfile",
                 id="dockerfile-without-from"),
    pytest.param(Dockerfile("# syntax=docker/dockerfile:1\n# FROM python\n"), InvalidDefinition,
                 "no FROM instruction", "Dockerfile", id="dockerfile-only-comments"),
    pytest.param(Dockerfile("FROM\nRUN true\n"), InvalidDefinition, "FROM names no image", "Dockerfile",
           id="dockerfile-bare-from"),
    pytest.param(_env(f"image: {IMAGE}\nconda_file: conda.yml\n"), InvalidDefinition,
                 "the conda file 'conda.yml' does not exist", "environment.yml#conda_file", id="conda-file-missing"),
    pytest.param(_env(f"image: {IMAGE}\nconda_file: conda.yml\n", {"env/conda.yml": "# nothing yet\n"}),
                 InvalidDefinition, "is empty", "environment.yml#conda_file", id="conda-file-empty"),
    pytest.param(_env("build:\n  path: ../ctx\n", {"ctx/Dockerfile": "FROM python\n"}), InvalidDefinition,
                 "leaves the YAML's folder", "environment.yml#build.path", id="build-path-dotdot"),
    pytest.param(_env("build:\n  path: /srv/ctx\n"), InvalidDefinition, "leaves the YAML's folder",
                 "environment.yml#build.path", id="build-path-absolute"),
    pytest.param(_env("build:\n  path: ctx\n", {"outside/Dockerfile": "FROM python\n", "env/ctx": Link("outside")}),
                 InvalidDefinition, "is a link to outside the YAML's folder", "environment.yml#build.path",
                 id="build-path-link-outside"),
    pytest.param(_env("build:\n  path: ctx\n"), InvalidDefinition, "the build context folder 'ctx' does not exist",
                 "environment.yml#build.path", id="build-path-missing"),
    pytest.param(_env("build:\n  path: https://github.com/org/repo#main:ctx\n"), InvalidDefinition,
                 "remote location", "environment.yml#build.path", id="build-path-remote"),
    pytest.param(YamlText("- image: python\n"), InvalidDefinition, "a mapping of fields", "<document>",
                 id="yaml-not-mapping"),
    pytest.param(ContextTree({"ctx/Dockerfile": "FROM python\n", "secret": "s3cr3t", "ctx/secret": Link("secret")}),
                 InvalidContext, "is a link to outside the build context", "secret", id="context-file-link-outside"),
    pytest.param(ContextTree({"ctx/Dockerfile": "FROM python\n", "data/a.csv": "1", "ctx/data": Link("data")}),
                 InvalidContext, "is a link to outside the build context", "data", id="context-folder-link-outside"),
    pytest.param(ContextTree({"ctx/Dockerfile": "FROM python\n", "ctx/src/a.py": "", "ctx/lib": Link("ctx/src")}),
                 InvalidContext, "copy it instead", "lib", id="context-folder-link-inside"),
    pytest.param(ContextTree({"elsewhere/Dockerfile": "FROM python\n"}), InvalidContext, "does not exist", "ctx",
                 id="context-missing"),
    pytest.param(ContextTree({"ctx/Dockerfile": "FROM python\n", "ctx/gone": Link("ctx/missing")}), InvalidContext,
           "link", "gone", id="context-dangling-link"),
    pytest.param(ContextTree({"ctx/Dockerfile": "FROM python\n", "ctx/loop": Link("ctx/loop")}), InvalidContext,
           "link", "loop", id="context-link-loop"),
]


@pytest.mark.parametrize(("case", "error", "message", "where"), ROWS)
def test_bad_definition_is_refused(
    case: Case, error: type[EnvhubError], message: str, where: str, tmp_path: Path
) -> None:
    with pytest.raises(error) as caught:
        _run(case, tmp_path)
    assert type(caught.value) is error
    assert message in caught.value.detail
    assert caught.value.where is not None
    assert where in caught.value.where
