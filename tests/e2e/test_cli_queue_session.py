"""Another system's view of queue-driven work: `envhub queue put` a message, `envhub queue get` the reply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import REPO, cli_env

CONDA = {"channels": ["conda-forge"], "dependencies": ["python=3.11", {"pip": ["requests==2.32.3"]}]}


def envhub(data: Path, *args: str) -> Any:
    """The CLI as another process on this machine: the server's data folder names its queue backend."""
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, "ENVHUB_DATA_DIR": str(data), **cli_env(*args)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_register_by_message_and_read_the_reply(server: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    message = tmp_path / "registration.json"
    message.write_text(json.dumps({
        "schema": "envhub.registration/1", "workspace": "default", "name": "queued",
        "definition": {"image": "python:3.11-slim", "conda_file": CONDA},
        "correlation_id": "session-1", "reply_to": "my-replies"}))
    assert envhub(data, "queue", "put", "environment-registrations", str(message), "--json")["bytes"] > 0
    reply = envhub(data, "queue", "get", "my-replies", "--wait", "60", "--json")["body"]
    assert (reply["correlation_id"], reply["status"], reply["environment"]) == ("session-1", "registered",
                                                                                 "queued:1")
    shown = envhub(data, "show", "queued:1", "--url", server, "--json")
    assert shown["hash"] == reply["hash"]

    message.write_text(json.dumps({"schema": "envhub.registration/1", "workspace": "default", "name": "bad",
                                   "definition": {"image": "python:3.11-slim", "conda_file": {"dependencies": 1}},
                                   "correlation_id": "session-2", "reply_to": "my-replies"}))
    envhub(data, "queue", "put", "environment-registrations", str(message), "--json")
    failed = envhub(data, "queue", "get", "my-replies", "--wait", "60", "--json")["body"]
    assert failed["status"] == "failed" and failed["error"]["where"].startswith("conda_file")
    poisoned = envhub(data, "queue", "get", "environment-registrations-poison", "--wait", "30", "--json")
    assert poisoned["body"]["correlation_id"] == "session-2" and poisoned["reason"].startswith("refused")
