"""The PackageIndex port through pip itself: `python -m pip index versions <package>`.

pip's own configuration (pip.conf, PIP_INDEX_URL and its kin, keyring) decides which index is asked, exactly as
for the `pip install` a build runs, so envhub names no index of its own. pip leaves pre-releases out unless
`--pre` is given, and yanked releases always.

pip answers "no matching distribution" both for a package the index does not have and for an index it could not
reach; run with `-vv`, it also says why each index page could not be fetched, which tells the two apart: a 404
(or 410) is an unknown package (BuildFailed, final), anything else an index that did not answer
(BuilderUnavailable: the queue tries again)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence

from shared.adapters.children import die_with_parent
from shared.domain.errors import BuilderUnavailable, BuildFailed
from shared.domain.templates import PACKAGE_NAME

DEFAULT_TIMEOUT = 120.0  # seconds for one package; pip retries an index that does not answer itself
_AVAILABLE = "Available versions:"
_LATEST = re.compile(r"^(?P<name>\S+) \((?P<version>[^()\s]+)\)$")
_NOT_FOUND = "No matching distribution found"
# pip -vv: "Could not fetch URL <url>: <reason> - skipping" for every index page it failed to read.
_FETCH_FAILED = re.compile(r"Could not fetch URL (?P<url>\S+?): (?P<reason>.*?) - skipping[ \t]*$", re.MULTILINE)
_GONE = re.compile(r"^(404|410) ")  # the index has no page for the package: it does not know it
# urllib3, through pip, at any verbosity: a connection broken, a retry made.
_RETRYING = re.compile(r"^WARNING: Retrying \(.*$", re.MULTILINE)


class PipIndex:
    """Asks pip, in a child process, for a package's newest release."""

    name = "pip"

    def __init__(self, command: Sequence[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 env: Mapping[str, str] | None = None) -> None:
        # The interpreter running envhub, so the pip (and the configuration) of its environment.
        self.command = list(command) if command else [sys.executable, "-m", "pip"]
        self.timeout = timeout
        self.env = None if env is None else dict(env)  # None: inherit envhub's environment (PIP_* included)

    def check(self) -> None:
        """pip runs."""
        done = self._run(["--version"], what="pip --version")
        if done.returncode != 0:
            raise BuilderUnavailable(f"pip does not run: {_last_line(done.stderr or done.stdout)}", where="pip")

    def latest_version(self, package: str, *, pre: bool = False) -> str:
        """The newest release of `package` the configured index offers (pre-releases too with `pre`)."""
        if PACKAGE_NAME.fullmatch(package) is None:
            raise BuildFailed(f"'{package}' is not a package name", where=package)
        args = ["index", "versions", package, "-vv", "--no-input", "--disable-pip-version-check", "--no-color"]
        done = self._run([*args, "--pre"] if pre else args, what=f"pip index versions {package}")
        return interpret(package, done.returncode, done.stdout, done.stderr, pre=pre)

    def _run(self, args: list[str], *, what: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(  # noqa: S603 - a fixed argument list, no shell; the name is checked above
                [*self.command, *args], capture_output=True, text=True, errors="replace", timeout=self.timeout,
                stdin=subprocess.DEVNULL, env=self.env, check=False, preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired as error:
            raise BuilderUnavailable(f"{what} took longer than {self.timeout:.0f} s and was stopped",
                                     where="pip") from error
        except OSError as error:
            raise BuilderUnavailable(f"could not run pip ({' '.join(self.command)}): {error}", where="pip") from error


def interpret(package: str, returncode: int, stdout: str, stderr: str, *, pre: bool = False) -> str:
    """The newest version from what `pip index versions` printed, or the error it means."""
    versions = parse_versions(stdout)
    if returncode == 0 and versions:
        return versions[0]
    if returncode == 0:
        raise BuildFailed(f"pip listed the versions of '{package}' in a form envhub cannot read: "
                          f"{_last_line(stdout)!r}", where=package)
    output = f"{stdout}\n{stderr}"
    trouble = index_trouble(output)
    if _NOT_FOUND in output and not trouble:
        what = "release or pre-release" if pre else "release (pre-releases are left out)"
        raise BuildFailed(f"the package index pip is configured with has no {what} of '{package}'", where=package)
    reason = "; ".join(dict.fromkeys(trouble)) or _last_line(stderr or stdout) or f"exit status {returncode}"
    raise BuilderUnavailable(f"pip could not list the versions of '{package}': {reason}", where=package)


def parse_versions(stdout: str) -> list[str]:
    """Versions, newest first, from `pip index versions` output: the `Available versions: a, b, c` line (the
    `name (x.y.z)` line before it names the newest), or pip's `--json` form; [] when neither is there."""
    lines = [line.strip() for line in stdout.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith(_AVAILABLE):
            versions = [v.strip() for v in line[len(_AVAILABLE):].split(",") if v.strip()]
            latest = _LATEST.match(lines[index - 1]) if index > 0 else None
            if latest is not None and latest["version"] in versions:
                versions.remove(latest["version"])
                versions.insert(0, latest["version"])
            return versions
        if line.startswith("{") and '"versions"' in line:
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                continue
            listed = [str(v) for v in answer.get("versions") or []]
            latest_json = answer.get("latest")
            return ([str(latest_json)] + [v for v in listed if v != latest_json]) if latest_json else listed
    return []


def index_trouble(output: str) -> list[str]:
    """Why pip could not read an index page, for every page that failed other than by not existing (404/410).
    Without pip's per-page lines (no -vv), a connection retried is taken as trouble."""
    failures = list(_FETCH_FAILED.finditer(output))
    if failures:  # a page that answered 404 after a retried connection did answer: only the outcome counts
        return [m["reason"].strip() for m in failures if not _GONE.match(m["reason"].strip())]
    retried = _RETRYING.findall(output)
    return [retried[-1].removeprefix("WARNING: ").strip()] if retried else []


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
