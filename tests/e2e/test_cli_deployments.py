"""`envhub deployment …` as a user runs it, against a real server in each home (SQLite, and the emulators)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import REPO, cli_env

ENVHUB = [sys.executable, "-m", "cli.main"]
DIGEST = "sha256:" + "0123456789abcdef" * 4


def envhub(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*ENVHUB, *args], capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**os.environ, "COLUMNS": "200", **cli_env(*args)})
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def as_json(*args: str) -> Any:
    return json.loads(envhub(*args, "--json").stdout)


def register_busybox(folder: Path, server: str, workspace: str) -> None:
    """A user-image environment on the base image the server seeds into its own registry (an unqualified name
    resolves to that registry)."""
    env = folder / "env.yml"
    env.write_text("name: runner\nimage: envhub/busybox:latest\n")
    envhub("register", str(env), "--url", server, "--workspace", workspace)


def test_set_list_show_delete(module_server: str, tmp_path: Path) -> None:
    where = ("--url", module_server, "--workspace", "cli-deploy")
    register_busybox(tmp_path, module_server, "cli-deploy")

    web = as_json("deployment", "set", "web", "--environment", "runner:1", "--image-digest", DIGEST,
                  "--endpoint", "scoring", "--kind", "batch", *where)
    assert {k: web[k] for k in ("workspace", "name", "environment", "image_digest", "endpoint", "kind",
                                "needs_redeploy", "redeploy_reason")} == {
        "workspace": "cli-deploy", "name": "web", "environment": "runner:1", "image_digest": DIGEST,
        "endpoint": "scoring", "kind": "batch", "needs_redeploy": False, "redeploy_reason": None}

    # Without a digest the environment's current image is recorded; the server seeded that image when it could
    # (buildah present), else there is no image yet and the service says so.
    image = as_json("image", "runner:1", *where)
    if image["exists"]:
        current = as_json("deployment", "set", "api", "--environment", "runner@latest", *where)
        assert current["environment"] == "runner:1" and current["image_digest"] == image["digest"]
        assert current["kind"] == "online" and current["endpoint"] is None
    else:
        missing = envhub("deployment", "set", "api", "--environment", "runner@latest", *where, ok=False)
        assert missing.returncode == 2 and "does not exist yet" in missing.stderr
        envhub("deployment", "set", "api", "--environment", "runner@latest", "--image-digest", DIGEST, *where)

    replaced = envhub("deployment", "set", "web", "--environment", "runner:1", "--image-digest", DIGEST, *where)
    assert replaced.stdout.startswith("updated deployment web (online): runner:1 " + DIGEST)

    assert [d["name"] for d in as_json("deployment", "list", *where)] == ["api", "web"]
    assert as_json("deployment", "list", "--needs-redeploy", *where) == []
    table = envhub("deployment", "list", *where).stdout
    assert "web" in table and "runner:1" in table and DIGEST[:19] in table

    shown = as_json("deployment", "show", "web", *where)
    assert shown["created_at"] == web["created_at"] and shown["updated_at"] > web["updated_at"]
    assert shown["kind"] == "online" and shown["endpoint"] is None  # a set replaces the whole deployment
    assert f"image_digest: {DIGEST}" in envhub("deployment", "show", "web", *where).stdout

    assert envhub("deployment", "delete", "web", *where).stdout.strip() == "deleted deployment web"
    gone = envhub("deployment", "show", "web", *where, ok=False)
    assert gone.returncode == 2 and gone.stderr.startswith("error (404)")
    again = envhub("deployment", "delete", "web", *where, ok=False)
    assert again.returncode == 2 and "no deployment 'web'" in again.stderr
    assert [d["name"] for d in as_json("deployment", "list", *where)] == ["api"]


def test_bad_input_exits_2_with_one_line(module_server: str, tmp_path: Path) -> None:
    where = ("--url", module_server, "--workspace", "cli-bad")
    register_busybox(tmp_path, module_server, "cli-bad")
    cases = [
        (("--environment", "runner:1", "--image-digest", "sha256:nope"), "image_digest"),
        (("--environment", "runner:1", "--image-digest", DIGEST, "--kind", "serverless"), "kind"),
        (("--environment", "runner", "--image-digest", DIGEST), "environment"),
        (("--environment", "absent:1", "--image-digest", DIGEST), "error (404)"),
    ]
    for args, word in cases:
        result = envhub("deployment", "set", "web", *args, *where, ok=False)
        assert result.returncode == 2 and result.stdout == "", result
        assert len(result.stderr.strip().splitlines()) == 1 and word in result.stderr, result.stderr
    assert as_json("deployment", "list", *where) == []


def test_unreachable_service_exits_3() -> None:
    for args in (("set", "web", "--environment", "runner:1"), ("list",), ("show", "web"), ("delete", "web")):
        result = envhub("deployment", *args, "--url", "http://127.0.0.1:9", ok=False)
        assert result.returncode == 3 and "cannot reach envhub" in result.stderr
