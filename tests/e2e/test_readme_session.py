"""README.md's session runs as written against a real `envhub serve`, and prints what the README shows."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tests.e2e.readme_session import REGISTRY, differences, run, session_steps, transcript
from tests.stack import require_build_tools
from tests.support import REPO, authed, running_server

# The README assumes `make run` from the repo root. Here the session runs in a folder laid out like that root:
# `.envhub` links to the test server's data folder (so the CLI reads the admin token there, as the README says it
# does, with no ENVHUB_TOKEN) and `.venv/bin/activate` puts an `envhub` on PATH that runs this checkout. Two things
# differ and are substituted consistently: the service URL (a free port, given as ENVHUB_URL, since the README's
# commands use the default 127.0.0.1:7071) and the local registry (a free port for the README's 127.0.0.1:5000, in
# the commands and in the expected outputs; buildah also names the data folder by path). buildah keeps the images
# the session commits in a storage under the test's folder (CONTAINERS_STORAGE_CONF), not the machine's.
README = REPO / "README.md"
ONCE_A_YEAR = "0 0 0 1 1 *"  # no scheduled scan in the middle: the session's own scan finds its findings new
COLUMNS = "120"  # the README's tables are as wide as a terminal of 120 columns shows them
FILES_SHOWN = ("conda.yaml", "train.sh", "copy.yml", "bad.yml", "Dockerfile", "trainer.yml", "env.yml", "base.yml")
COMMANDS_RUN = ("envhub hash", "envhub register", "envhub build", "envhub image", "envhub diff", "envhub list",
                "envhub deployment set", "envhub scan --wait", "envhub findings", "buildah commit")


def test_the_session_shows_every_file_it_uses() -> None:
    """Each file the session reads is written by one of its own commands (a heredoc), so typing them is enough."""
    steps = session_steps(README.read_text())
    written = {step.command.split("\n", 1)[0] for step in steps if "<<" in step.command}
    for name in FILES_SHOWN:
        assert any(f"/{name} <<" in line for line in written), f"the session never writes {name}"
    commands = [step.command for step in steps]
    for command in COMMANDS_RUN:
        assert any(c.startswith(command) for c in commands), f"the session never runs `{command}`"


def test_the_session_runs_as_written(tmp_path: Path) -> None:
    require_build_tools()
    steps = session_steps(README.read_text())
    root = tmp_path / "repo"
    with running_server(tmp_path, env={"PATCH_SCAN_SCHEDULE": ONCE_A_YEAR}) as url:
        registry = authed.get(f"{url}/api/health").json()["registry"]["host"]
        data = tmp_path / "data"
        substitutions = {REGISTRY: registry, ".envhub/": f"{data}/"}  # buildah names its registries.conf by path
        env = _session_env(root, data, tmp_path, url)
        started = time.monotonic()
        results = run(steps, substitutions, cwd=root, env=env, timeout=300)
        took = time.monotonic() - started
    problems = differences(steps, results, substitutions)
    slowest = sorted(zip(steps, results, strict=True), key=lambda pair: -pair[1].seconds)[:3]
    timing = ", ".join(f"{ran.seconds:.1f} s `{step.command.splitlines()[0][:40]}`" for step, ran in slowest)
    assert not problems, (f"{len(problems)} step(s) of README.md's session differ from what they print:\n\n"
                          + "\n\n".join(problems) + "\n\nThe session as it ran:\n" + transcript(steps, results))
    assert took < 240, f"the session took {took:.0f} s (slowest: {timing})"


def _session_env(root: Path, data: Path, folder: Path, url: str) -> dict[str, str]:
    """A folder like the repo root (`.envhub`, `.venv/bin/activate`, `envhub`) and the environment to run in it."""
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (root / ".envhub").symlink_to(data, target_is_directory=True)
    envhub = bin_dir / "envhub"
    envhub.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m cli.main "$@"\n')
    envhub.chmod(0o755)
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"\nexport PATH\n')
    storage = folder / "buildah"
    (folder / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{storage}/root"\n'
                                         f'runroot = "{storage}/run"\n')
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("ENVHUB_") and key not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return {**env, "ENVHUB_URL": url, "COLUMNS": COLUMNS, "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8",
            "CONTAINERS_STORAGE_CONF": str(folder / "storage.conf")}
