"""Tokens from the CLI against a real server: the admin token file, create, use, list, revoke."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from tests.e2e.test_cli_session import ENVHUB, write_env
from tests.support import REPO


def run(*args: str, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("ENVHUB_TOKEN", "ENVHUB_DATA_DIR")}
    result = subprocess.run([*ENVHUB, *args], capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**clean, "COLUMNS": "200", **env})
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def test_tokens_from_the_cli(server: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    kept = data / "admin-token"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    local = {"ENVHUB_DATA_DIR": str(data)}  # the CLI on the server's machine reads the admin token file
    nobody = {"ENVHUB_DATA_DIR": str(tmp_path / "elsewhere")}

    refused = run("list", "--url", server, "--workspace", "w", env=nobody, ok=False)
    assert refused.returncode == 2 and "(401)" in refused.stderr and "ENVHUB_TOKEN" in refused.stderr

    issued = json.loads(run("token", "create", "--workspace", "w", "--role", "reader", "--json", "--url", server,
                            env=local).stdout)
    assert issued["token"].startswith("envhub_") and issued["role"] == "reader"
    reader = {**nobody, "ENVHUB_TOKEN": issued["token"]}
    assert json.loads(run("list", "--url", server, "--workspace", "w", "--json", env=reader).stdout) == []
    env_file = write_env(tmp_path, ["python=3.11"])
    forbidden = run("register", str(env_file), "--url", server, "--workspace", "w", env=reader, ok=False)
    assert forbidden.returncode == 2 and "(403)" in forbidden.stderr and "contributor" in forbidden.stderr
    hidden = run("list", "--url", server, "--workspace", "other", env=reader, ok=False)
    assert hidden.returncode == 2 and "(404)" in hidden.stderr

    listed = run("token", "list", "--url", server, env=local).stdout
    assert issued["id"] in listed and "reader@w" in listed and issued["token"] not in listed
    assert "revoked" in run("token", "revoke", issued["id"], "--url", server, env=local).stdout
    assert "(401)" in run("list", "--url", server, "--workspace", "w", env=reader, ok=False).stderr
