"""Every corpus definition registers through the CLI and HTTP API with the same hash and Azure ML version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from tests.integration.test_anonymous_oracle import BASE, azure_version
from tests.support import authed, cli_env, conda_specs, corpus, curated_assets, example_yamls, ids

runner = CliRunner()
# The one corpus base on no registry envhub contacts by default (ENVHUB_ALLOWED_REGISTRIES): refused, and said so.
OFF_THE_LIST = "ptebic.azurecr.io"


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=cli_env(*args))
    return result.exit_code, result.stdout, result.stderr


def register_and_compare(server: str, path: Path, *extra: str) -> dict[str, Any]:
    code, out, err = cli("register", str(path), "--url", server, "--workspace", "corpus", "--json", *extra)
    assert code == 0, err
    record: dict[str, Any] = json.loads(out)
    code, out, err = cli("hash", str(path), "--json")
    assert code == 0, err
    offline = json.loads(out)
    same = ("hash", "image", "anonymous_version", "base_images")
    assert {k: record[k] for k in same} == {k: offline[k] for k in same}
    assert record["anonymous_version"] == azure_version(path)
    return record


@pytest.mark.parametrize("path", ids(example_yamls()), ids=lambda p: p.parent.name[-50:])
def test_examples_register(module_server: str, path: Path) -> None:
    corpus()
    if not (path.parent / "conda.yaml").exists() and "conda.yaml" in path.read_text():
        code, _, err = cli("register", str(path), "--url", module_server, "--workspace", "corpus")
        assert code == 2 and "conda.yaml" in err and "does not exist" in err
        # the YAML sent as it is: the service cannot read the client's file, and says so
        raw = yaml.safe_load(path.read_text())
        response = authed.post(f"{module_server}/api/workspaces/corpus/environments/{raw['name']}/versions",
                              json=raw)
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["where"] == "conda_file" and "'conda.yaml' is a file on the client" in problem["detail"]
        return
    dockerfile = path.parent / "context" / "Dockerfile"
    if dockerfile.is_file() and f"FROM {OFF_THE_LIST}/" in dockerfile.read_text():
        code, _, err = cli("register", str(path), "--url", module_server, "--workspace", "corpus")
        assert code != 0 and "ENVHUB_ALLOWED_REGISTRIES" in err and OFF_THE_LIST in err, err
        assert "build context: Dockerfile, line 1" in err, err
        return
    name = yaml.safe_load(path.read_text())["name"]
    record = register_and_compare(module_server, path, "--name", f"ex-{path.parent.name[-40:]}")
    assert record["kind"] in ("user_image", "system_managed", "docker_build") and name


@pytest.mark.parametrize("path", ids(curated_assets()), ids=lambda p: p.name)
def test_curated_register_under_a_new_name(module_server: str, path: Path) -> None:
    corpus()
    record = register_and_compare(module_server, path, "--name", f"my-{path.name}")
    # the copy is the user's own Docker build; the catalog's entry stays curated, with the same image
    assert record["kind"] == "docker_build" and record["version"] == "1"


@pytest.mark.parametrize("path", ids(conda_specs()), ids=lambda p: p.name[-60:])
def test_conda_specs_register(module_server: str, path: Path, tmp_path: Path) -> None:
    corpus()
    env_yaml = tmp_path / "env.yml"
    env_yaml.write_text(yaml.safe_dump({"name": "conda-" + path.stem[-60:].replace("_", "-").strip("-."),
                                        "image": BASE, "conda_file": str(path)}))
    record = register_and_compare(module_server, env_yaml)
    assert record["kind"] == "system_managed" and record["definition"]["conda_file"] == yaml.safe_load(path.read_text())
