"""envhub's anonymous_version against azure-ai-ml's own computation, over the corpus and odd contexts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.ai.ml.entities import BuildContext, Environment

from shared.domain.errors import InvalidDefinition
from shared.sources.local import describe_local, load
from tests.support import conda_specs, corpus, curated_assets, example_yamls, ids

BASE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


def azure_version(path: Path) -> str:
    """What azure-ai-ml computes for the definition at `path`, registered anonymously."""
    loaded = load(path)
    doc: dict[str, Any] = loaded.document
    if loaded.context_dir is not None:
        env = Environment(build=BuildContext(path=str(loaded.context_dir),
                                             dockerfile_path=doc.get("build", {}).get("dockerfile_path")),
                          is_anonymous=True)
    else:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
        conda = raw.get("conda_file", doc.get("conda_file"))
        env = Environment(image=doc["image"], conda_file=conda, inference_config=doc.get("inference_config"),
                          is_anonymous=True, base_path=str(path.parent))
    return str(env.version)


@pytest.mark.parametrize("path", ids(example_yamls()), ids=lambda p: p.parent.name[-50:])
def test_examples_match_azure_ai_ml(path: Path) -> None:
    corpus()
    try:
        local = describe_local(path)
    except InvalidDefinition as error:
        assert "conda file" in error.detail and "does not exist" in error.detail
        return
    assert local.description.anonymous_version == azure_version(path)


@pytest.mark.parametrize("path", ids(curated_assets()), ids=lambda p: p.name)
def test_curated_match_azure_ai_ml(path: Path) -> None:
    corpus()
    assert describe_local(path).description.anonymous_version == azure_version(path)


@pytest.mark.parametrize("path", ids(conda_specs()), ids=lambda p: p.name[-60:])
def test_conda_specs_match_azure_ai_ml(path: Path, tmp_path: Path) -> None:
    corpus()
    env_yaml = tmp_path / "env.yml"
    env_yaml.write_text(yaml.safe_dump({"name": "x", "image": BASE, "conda_file": str(path)}))
    expected = Environment(image=BASE, conda_file=str(path), is_anonymous=True).version
    assert describe_local(env_yaml).description.anonymous_version == expected


def test_inference_config_matches(tmp_path: Path) -> None:
    config = {"liveness_route": {"port": 5001, "path": "/"}, "scoring_route": {"port": 5001, "path": "/score"},
              "readiness_route": {"port": 5001, "path": "/ready"}}
    env_yaml = tmp_path / "env.yml"
    env_yaml.write_text(yaml.safe_dump({"name": "x", "image": BASE, "inference_config": config}))
    expected = Environment(image=BASE, inference_config=config, is_anonymous=True).version
    assert describe_local(env_yaml).description.anonymous_version == expected


def _tree(root: Path, files: dict[str, str], executable: tuple[str, ...] = (), dirs: tuple[str, ...] = ()) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for rel in executable:
        os.chmod(root / rel, 0o755)
    for rel in dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)


ODD_CONTEXTS: list[tuple[dict[str, str], tuple[str, ...], str | None]] = [
    ({"Dockerfile": "FROM busybox\n", "b.txt": "b", "A.txt": "a", "sub/Z": "z", "sub/y/q": "q"}, (), None),
    ({"Dockerfile": "FROM busybox\n", ".amlignore": "*.log\nbuild/\n!keep.log\n", "x.log": "1", "keep.log": "2",
      "build/out": "o", "src/a.py": "p"}, (), None),
    ({"Dockerfile": "FROM busybox\n", ".gitignore": "/secret\n**/tmp\n", "secret": "s", "a/tmp/x": "t"}, (), None),
    ({"Dockerfile": "FROM busybox\n", ".amlignore": "*.bin\n", ".gitignore": "*.txt\n", "a.bin": "1", "a.txt": "2"},
     (), "Dockerfile"),
    ({"docker/Dockerfile": "FROM busybox\n", "run.sh": "#!/bin/sh\n"}, ("run.sh",), "docker/Dockerfile"),
]


@pytest.mark.parametrize(("files", "executable", "dockerfile"), ODD_CONTEXTS)
def test_odd_contexts_match_azure_ai_ml(tmp_path: Path, files: dict[str, str], executable: tuple[str, ...],
                                        dockerfile: str | None) -> None:
    context = tmp_path / "ctx"
    _tree(context, files, executable, dirs=("empty/inner",))
    build: dict[str, str] = {"path": "ctx"}
    if dockerfile:
        build["dockerfile_path"] = dockerfile
    env_yaml = tmp_path / "env.yml"
    env_yaml.write_text(yaml.safe_dump({"name": "x", "build": build}))
    expected = Environment(build=BuildContext(path=str(context), dockerfile_path=dockerfile), is_anonymous=True)
    assert describe_local(env_yaml).description.anonymous_version == expected.version
