"""What a newcomer hit, through the real CLI against a real server: every bad input is one line on stderr and
exit 2, an unreachable service exit 3, and nothing (redirects, non-JSON answers) ever prints a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.test_cli_session import ENVHUB, envhub, write_env
from tests.support import REPO, cli_env


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command that exited with `code`."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


BAD_REFS = ["trainer@", "trainer:", "@latest", "a:b:c", "trainer@v2", "a/b:1", "x:1/2", ":", "azureml:"]


def test_malformed_references_are_one_line_exit_2(server: str) -> None:
    for ref in BAD_REFS:
        for command in (["show", ref], ["image", ref], ["build", ref], ["diff", ref, "1"], ["archive", ref]):
            line = one_line(envhub(*command, "--url", server, ok=False), 2)
            assert repr(ref) in line and "NAME:VERSION" in line, line
    line = one_line(envhub("diff", "trainer:1", "1/2", "--url", server, ok=False), 2)
    assert "'1/2' is not a version" in line


def test_a_url_without_scheme_means_http(server: str, tmp_path: Path) -> None:
    env = write_env(tmp_path, ["python=3.11"])
    bare = server.removeprefix("http://")
    assert json.loads(envhub("register", str(env), "--url", bare, "--json").stdout)["version"] == "1"
    assert [e["name"] for e in json.loads(envhub("list", "--url", bare + "/", "--json").stdout)] == ["trainer"]
    line = one_line(envhub("list", "--url", "127.0.0.1:9", ok=False), 3)
    assert "cannot reach envhub at http://127.0.0.1:9/api" in line and "http:// was assumed" in line
    plain = one_line(envhub("list", "--url", "http://127.0.0.1:9", ok=False), 3)
    assert "assumed" not in plain


@pytest.mark.parametrize("url", ["http://", "ftp://127.0.0.1:7071", "http://127.0.0.1:99999", "http://a b:1", "",
                                 "http://127.0.0.1:7071/?x=1", "127.0.0.1:port"])
def test_malformed_urls_are_one_line_exit_2(url: str) -> None:
    line = one_line(envhub("list", "--url", url, ok=False), 2)
    assert "--url" in line


def test_archive_needs_a_version_and_latest_says_when_all_are_archived(server: str, tmp_path: Path) -> None:
    env = write_env(tmp_path, ["python=3.11"])
    envhub("register", str(env), "--url", server)
    for command in ("archive", "restore"):
        for ref in ("trainer", "trainer@latest"):
            line = one_line(envhub(command, ref, "--url", server, ok=False), 2)
            assert f"`envhub {command} trainer:VERSION`" in line, line
    envhub("archive", "trainer:1", "--url", server)
    for command in ("show", "image", "build"):
        line = one_line(envhub(command, "trainer@latest", "--url", server, ok=False), 2)
        assert line.startswith("every version of trainer is archived; restore one"), line
        assert "name a version" in line
    missing = one_line(envhub("show", "nobody@latest", "--url", server, ok=False), 2)
    assert "not registered" in missing
    envhub("restore", "trainer:1", "--url", server)
    assert json.loads(envhub("show", "trainer@latest", "--url", server, "--json").stdout)["version"] == "1"


class _Odd(BaseHTTPRequestHandler):
    """Not an envhub service: redirects everything to itself, or answers HTML."""

    def _answer(self) -> None:
        if self.path.startswith("/html/"):
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(307)
        self.send_header("location", self.path)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def odd_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_redirects_and_non_json_answers_are_one_line(odd_server: str, tmp_path: Path) -> None:
    looping = one_line(envhub("show", "trainer:1", "--url", odd_server, ok=False), 1)
    assert "redirect" in looping.lower()
    env = write_env(tmp_path, ["python=3.11"])
    refused = one_line(envhub("register", str(env), "--url", odd_server, ok=False), 1)
    assert "307" in refused and "not followed for POST" in refused
    html = one_line(envhub("list", "--url", odd_server + "/html", ok=False), 1)
    assert "not JSON" in html and "text/html" in html


def _sleeper(tmp_path: Path, server: str, seconds: int) -> None:
    (tmp_path / "ctx").mkdir(exist_ok=True)
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM envhub/busybox:latest\nRUN echo napping && sleep {seconds}\n")
    (tmp_path / "env.yml").write_text("name: sleeper\nbuild:\n  path: ctx\n")
    envhub("register", str(tmp_path / "env.yml"), "--url", server)


def test_no_wait_prints_how_to_follow_and_build_log_follows_by_id(server: str, tmp_path: Path) -> None:
    _sleeper(tmp_path, server, 1)
    started = envhub("build", "sleeper:1", "--url", server, "--no-wait")
    build_id = started.stdout.split()[1].rstrip(":")
    assert f"`envhub build-log {build_id} --follow --url {server}`" in started.stderr
    followed = envhub("build-log", build_id, "--follow", "--poll", "0.2", "--url", server)
    assert "napping" in followed.stdout and f"build {build_id}: succeeded" in followed.stderr
    again = envhub("build-log", build_id, "--url", server)
    assert again.stdout == followed.stdout
    assert "already succeeded" in envhub("build-cancel", build_id, "--url", server).stdout
    unknown = one_line(envhub("build-log", "nope", "--url", server, ok=False), 2)
    assert "nope" in unknown
    assert one_line(envhub("build-log", "../x", "--url", server, ok=False), 2).startswith("'../x' is not a build id")


def test_ctrl_c_while_following_leaves_the_build_running_and_says_so(server: str, tmp_path: Path) -> None:
    _sleeper(tmp_path, server, 60)
    process = subprocess.Popen([*ENVHUB, "build", "sleeper:1", "--url", server, "--poll", "0.2"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "300", **cli_env(server)})
    image = json.loads(envhub("image", "sleeper:1", "--url", server, "--json").stdout)
    deadline = time.monotonic() + 30
    while image["build_status"] not in ("running",) and time.monotonic() < deadline:
        time.sleep(0.3)
        image = json.loads(envhub("image", "sleeper:1", "--url", server, "--json").stdout)
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("build ") and " goes on; follow it with `envhub build-log " in last
    build_id = last.split()[1]
    assert f"or cancel it with `envhub build-cancel {build_id} --url {server}`" in last
    assert "cancel requested" in envhub("build-cancel", build_id, "--url", server).stdout
    ended = envhub("build-log", build_id, "--follow", "--poll", "0.2", "--url", server, ok=False)
    assert ended.returncode == 1 and f"build {build_id}: cancelled" in ended.stderr
