"""A user's session with the real CLI processes against a real server: register, show, edit, diff, list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import REPO, cli_env

ENVHUB = [sys.executable, "-m", "cli.main"]


def envhub(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*ENVHUB, *args], capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**os.environ, "COLUMNS": "200", **cli_env(*args)})
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def write_env(folder: Path, dependencies: list[object]) -> Path:
    (folder / "conda.yaml").write_text(yaml.safe_dump({"channels": ["conda-forge"], "dependencies": dependencies}))
    env = folder / "env.yml"
    env.write_text("$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
                   "name: trainer\nimage: python:3.11-slim\nconda_file: conda.yaml\n")
    return env


def test_register_show_edit_register_diff(server: str, tmp_path: Path) -> None:
    env = write_env(tmp_path, ["python=3.11", {"pip": ["numpy"]}])
    first = json.loads(envhub("register", str(env), "--url", server, "--json").stdout)
    assert first["version"] == "1"

    shown = envhub("show", "trainer:1", "--url", server, "--yaml").stdout
    edited = yaml.safe_load(shown)
    assert "version" not in edited and edited["conda_file"]["dependencies"][0] == "python=3.11"
    edited["conda_file"]["dependencies"].reverse()
    (tmp_path / "edited.yml").write_text(yaml.safe_dump(edited))
    second = json.loads(envhub("register", str(tmp_path / "edited.yml"), "--url", server, "--json").stdout)
    assert second["version"] == "2" and second["hash"] != first["hash"]

    diff = json.loads(envhub("diff", "trainer:2", "1", "--url", server, "--json").stdout)
    assert diff["hash_changed"] is True and [c["field"] for c in diff["changes"]] == ["conda_file.dependencies"]
    listed = json.loads(envhub("list", "--url", server, "--json").stdout)
    assert [(e["name"], e["version"]) for e in listed] == [("trainer", "2")]
    assert "trainer" in envhub("list", "--url", server).stdout
    latest = json.loads(envhub("show", "trainer@latest", "--url", server, "--json").stdout)
    assert latest["version"] == "2"


def test_build_context_is_uploaded(server: str, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("ARG TAG=3.12\nFROM python:${TAG} AS base\nFROM base\n")
    (tmp_path / "env.yml").write_text("name: built\nbuild:\n  path: ctx\n")
    record = json.loads(envhub("register", str(tmp_path / "env.yml"), "--url", server, "--json").stdout)
    offline = json.loads(envhub("hash", str(tmp_path / "env.yml"), "--json").stdout)
    assert record["hash"] == offline["hash"] and record["base_images"] == ["python:3.12"]
    again = json.loads(envhub("register", str(tmp_path / "env.yml"), "--url", server, "--json").stdout)
    assert again["version"] == "2" and again["hash"] == record["hash"]


def test_bad_input_exits_2_with_one_line(tmp_path: Path, server: str) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nimage: [unclosed\n")
    result = envhub("hash", str(bad), "--json", ok=False)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "bad.yml:3:1" in result.stderr
    assert "malformed YAML" in result.stderr
    reserved = tmp_path / "reserved.yml"
    reserved.write_text("name: AzureML-mine\nimage: python:3.11\n")
    result = envhub("register", str(reserved), "--url", server, ok=False)
    assert result.returncode == 2 and "reserved" in result.stderr
    missing = envhub("hash", str(tmp_path / "nope.yml"), ok=False)
    assert missing.returncode == 2 and "nope.yml" in missing.stderr and "does not exist" in missing.stderr


def test_unreachable_service_is_a_clear_error(tmp_path: Path) -> None:
    env = write_env(tmp_path, ["python=3.11"])
    result = envhub("register", str(env), "--url", "http://127.0.0.1:9", ok=False)
    assert result.returncode == 3 and "cannot reach envhub" in result.stderr


def test_build_then_cache_hit_through_the_cli(server: str, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM envhub/busybox:latest\nRUN echo cli > /cli\n")
    (tmp_path / "env.yml").write_text("name: cli-built\nbuild:\n  path: ctx\n")
    envhub("register", str(tmp_path / "env.yml"), "--url", server)
    built = envhub("build", "cli-built:1", "--url", server, "--json", "--poll", "0.2")
    first = json.loads(built.stdout)
    assert first["status"] == "succeeded" and first["cached"] is False and first["digest"].startswith("sha256:")
    again = json.loads(envhub("build", "cli-built@latest", "--url", server, "--json").stdout)
    assert again == {**first, "cached": True, "build_id": None}
    streamed = envhub("build", "cli-built:1", "--url", server)
    assert "cached" in streamed.stdout
    details = json.loads(envhub("image", "cli-built:1", "--url", server, "--json").stdout)
    assert details["exists"] is True and details["digest"] == first["digest"]

    (tmp_path / "ctx" / "Dockerfile").write_text("FROM envhub/busybox:latest\nRUN echo broken && false\n")
    envhub("register", str(tmp_path / "env.yml"), "--url", server)
    failed = envhub("build", "cli-built:2", "--url", server, "--poll", "0.2", ok=False)
    assert failed.returncode == 1 and "broken" in failed.stderr and "failed" in failed.stderr
