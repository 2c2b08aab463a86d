"""README.md's "A session": its console blocks as steps, run in one bash, and outputs compared modulo what varies."""

from __future__ import annotations

import difflib
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SECTION = "## A session"
REGISTRY = "127.0.0.1:5000"  # the local registry `make run` starts, as the README names it
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
_MARK = "@@readme-step-{}-rc="
_START = re.compile(r"@@readme-start t=([0-9.]+)\n")
_MARKS = re.compile(r"@@readme-step-(\d+)-rc=(\d+) t=([0-9.]+)\n")

# What differs on every run, and how both the README and the real output are written before comparing them:
# image digests (the seeded base is made from this machine's busybox at start-up), buildah's image and container
# ids and its build tags, scan ids, times. Hashes of definitions, image names and finding ids stay exact.
VARIABLE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sha256:[0-9a-f]{12,64}"), "sha256:<digest>"),
    (re.compile(r"^[0-9a-f]{64}$", re.M), "<id>"),
    (re.compile(r"^--> [0-9a-f]{11,64}$", re.M), "--> <id>"),
    (re.compile(r"(localhost/envhub-build/\S+?):\d+"), r"\1:<tag>"),
    (re.compile(r"\bscan [0-9a-f]{32}\b"), "scan <id>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?Z?)?"), "<time>"),
)


@dataclass(frozen=True)
class Step:
    """One `$ command` (with its heredoc's lines, if any) and the output the README shows under it."""

    command: str
    expected: tuple[str, ...]
    line: int  # the README line of the `$`


def session_blocks(readme: str) -> list[tuple[int, list[str]]]:
    """The console blocks of the session section: (line number of the first line inside, its lines)."""
    lines = readme.splitlines()
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks: list[tuple[int, list[str]]] = []
    i = start
    while i < end:
        if lines[i].strip() == "```console":
            close = lines.index("```", i + 1)
            blocks.append((i + 2, lines[i + 1:close]))
            i = close
        i += 1
    return blocks


def session_steps(readme: str) -> list[Step]:
    """Every command of the session, in order, with its expected output (trailing blank lines dropped)."""
    steps: list[Step] = []
    for first, block in session_blocks(readme):
        i = 0
        while i < len(block):
            line = block[i]
            if not line.startswith("$ "):
                raise ValueError(f"README.md:{first + i}: output with no command before it: {line!r}")
            command, at = [line[2:]], first + i
            heredoc = _HEREDOC.search(line)
            i += 1
            if heredoc:
                while i < len(block) and block[i] != heredoc.group(2):
                    command.append(block[i])
                    i += 1
                if i == len(block):
                    raise ValueError(f"README.md:{at}: the heredoc never ends with {heredoc.group(2)}")
                command.append(block[i])
                i += 1
            output: list[str] = []
            while i < len(block) and not block[i].startswith("$ "):
                output.append(block[i])
                i += 1
            steps.append(Step("\n".join(command), tuple(_trimmed(output)), at))
    return steps


def script(steps: Sequence[Step], substitutions: Mapping[str, str]) -> str:
    """One bash script of every step, stderr into stdout (as a terminal shows both), a marker after each."""
    body = ["exec 2>&1", 'echo "@@readme-start t=$EPOCHREALTIME"']
    for number, step in enumerate(steps):
        body += [substitute(step.command, substitutions), f'echo "{_MARK.format(number)}$? t=$EPOCHREALTIME"']
    return "\n".join(body) + "\n"


@dataclass(frozen=True)
class Ran:
    """What one step did: its exit code, its output (stdout and stderr as they came), and how long it took."""

    code: int
    output: str
    seconds: float


def run(steps: Sequence[Step], substitutions: Mapping[str, str], *, cwd: Path, env: Mapping[str, str],
        timeout: float) -> list[Ran]:
    """Run the steps in one bash (so `cd` and variables carry over)."""
    done = subprocess.run(["bash", "--noprofile", "--norc", "-c", script(steps, substitutions)], cwd=cwd,
                          env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          check=False)
    start = _START.match(done.stdout)
    if start is None:
        raise AssertionError(f"bash did not start the session: {done.stdout[-2000:]}")
    parts = _MARKS.split(done.stdout[start.end():])
    ran, clock = [], float(start.group(1))
    for i in range(0, len(parts) - 1, 4):
        ran.append(Ran(int(parts[i + 2]), parts[i], float(parts[i + 3]) - clock))
        clock = float(parts[i + 3])
    if len(ran) != len(steps):
        raise AssertionError(f"bash ran {len(ran)} of {len(steps)} steps: {done.stdout[-2000:]}")
    return ran


def substitute(text: str, substitutions: Mapping[str, str]) -> str:
    """Replace each key by its value."""
    for old, new in substitutions.items():
        text = text.replace(old, new)
    return text


def normalize(lines: Iterable[str]) -> list[str]:
    """Lines with what varies per run replaced by placeholders, trailing spaces and blank lines dropped."""
    text = "\n".join(line.rstrip() for line in lines)
    for pattern, placeholder in VARIABLE:
        text = pattern.sub(placeholder, text)
    return _trimmed(text.split("\n"))


def differences(steps: Sequence[Step], results: Sequence[Ran],
                substitutions: Mapping[str, str]) -> list[str]:
    """Each step whose output is not the README's, or whose exit code is not what its output implies: a command
    the README shows failing (`error (...)`) exits 2, any other 0. Empty when the README holds."""
    problems: list[str] = []
    for step, ran in zip(steps, results, strict=True):
        code, output = ran.code, ran.output
        expected = normalize(substitute(line, substitutions) for line in step.expected)
        actual = normalize(output.split("\n"))
        want = 2 if expected[:1] and expected[0].startswith("error (") else 0
        if expected != actual or code != want:
            diff = "\n".join(difflib.unified_diff(expected, actual, "README", "ran", lineterm="", n=1))
            problems.append(f"README.md:{step.line}: $ {step.command.splitlines()[0]}\n"
                            f"exit {code} (expected {want})\n{diff}")
    return problems


def transcript(steps: Sequence[Step], results: Sequence[Ran]) -> str:
    """The session as it ran, written as the README writes it (to update it by hand)."""
    out: list[str] = []
    for step, ran in zip(steps, results, strict=True):
        out += ["$ " + step.command, *_trimmed(line.rstrip() for line in ran.output.split("\n"))]
    return "\n".join(out)


def _trimmed(lines: Iterable[str]) -> list[str]:
    kept = list(lines)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept
