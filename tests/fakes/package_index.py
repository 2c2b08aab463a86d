"""A PackageIndex from a dict, and a stand-in `pip` that prints what `pip index versions -vv` prints.

    index = FakePackageIndex({"azureml-core": ["1.60.0", "1.59.0"], "mldesigner": ["0.2.0b1", "0.1.0"]})
    index.down = True          # now every lookup is an index that does not answer (BuilderUnavailable)

    command = fake_pip(tmp_path)   # [python, script]: give it to PipIndex(command=...)
"""

from __future__ import annotations

import re
import sys
import threading
from collections import Counter
from pathlib import Path

from shared.domain.errors import BuilderUnavailable, BuildFailed
from shared.domain.templates import canonical_name

_PRE_RELEASE = re.compile(r"\d(?:a|b|rc)\d+|\.dev\d+")


class FakePackageIndex:
    """Releases by package, newest first; `1.0a1`, `1.0b2`, `1.0rc1` and `1.0.dev3` are pre-releases."""

    def __init__(self, releases: dict[str, list[str]] | None = None) -> None:
        self.releases = {canonical_name(name): versions for name, versions in (releases or {}).items()}
        self.down = False
        self.calls: Counter[tuple[str, bool]] = Counter()
        self._lock = threading.Lock()

    def latest_version(self, package: str, *, pre: bool = False) -> str:
        with self._lock:
            self.calls[package, pre] += 1
        if self.down:
            raise BuilderUnavailable("the package index does not answer (fake)", where=package)
        versions = [v for v in self.releases.get(canonical_name(package), [])
                    if pre or _PRE_RELEASE.search(v) is None]
        if not versions:
            raise BuildFailed(f"the package index pip is configured with has no release of '{package}' (fake)",
                              where=package)
        return versions[0]


# What pip 26 prints, by package name: stdout, stderr, exit status. `-vv` lines are abridged but kept in shape.
_SCRIPT = r'''
import sys, time
args = sys.argv[1:]
with open(__file__ + ".calls", "a") as calls:
    calls.write(" ".join(args) + "\n")
if args == ["--version"]:
    print("pip 26.3 from /somewhere (python 3.11)")
    sys.exit(0)
package = args[2]
pre = "--pre" in args
here = "http://127.0.0.1:9/simple/" + package.lower() + "/"
fetch = "Fetching project page and analyzing links: " + here
if package == "demo-pkg":
    print("1 location(s) to search for versions of demo-pkg:\n* " + here + "\n" + fetch)
    print("Starting new HTTP connection (1): 127.0.0.1:9")
    print("  Found link http://127.0.0.1:9/files/demo_pkg-1.10.0.tar.gz (from " + here + "), version: 1.10.0")
    if pre:
        print("demo-pkg (2.0.0rc1)\nAvailable versions: 2.0.0rc1, 1.10.0, 1.2.0, 1.0.0")
    else:
        print("demo-pkg (1.10.0)\nAvailable versions: 1.10.0, 1.2.0, 1.0.0")
    print("  INSTALLED: 1.2.0\n  LATEST:    1.10.0")
    sys.stderr.write("WARNING: Location 'file:///opt/x/simple/demo-pkg/' is ignored: it is neither a file nor a "
                     "directory.\n")
elif package == "json-pkg":
    print('{"name": "json-pkg", "versions": ["3.1.0", "3.0.0"], "latest": "3.1.0"}')
elif package == "missing-pkg":
    print(fetch + "\nCould not fetch URL " + here + ": 404 Client Error: Not Found for url: " + here + " - skipping")
    sys.stderr.write("ERROR: No matching distribution found for missing-pkg\n")
    sys.exit(1)
elif package == "offline-pkg":
    sys.stderr.write("WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after "
                     "connection broken by 'NewConnectionError(\"Failed to establish a new connection: [Errno 111] "
                     "Connection refused\")': /simple/offline-pkg/\n")
    print(fetch + "\nCould not fetch URL " + here + ": connection error: [Errno 111] Connection refused - skipping")
    sys.stderr.write("ERROR: No matching distribution found for offline-pkg\n")
    sys.exit(1)
elif package == "flaky-pkg":
    print(fetch + "\nCould not fetch URL " + here + ": HTTPConnectionPool(host='127.0.0.1', port=9): Max retries "
          "exceeded with url: /simple/flaky-pkg/ (Caused by ResponseError('too many 503 error responses')) - skipping")
    sys.stderr.write("ERROR: No matching distribution found for flaky-pkg\n")
    sys.exit(1)
elif package == "slow-pkg":
    time.sleep(30)
elif package == "garbled-pkg":
    print("something pip never printed")
elif package == "broken-pkg":
    sys.stderr.write("Traceback (most recent call last):\n  ...\nKeyError: 'boom'\n")
    sys.exit(2)
else:
    sys.stderr.write("ERROR: No matching distribution found for " + package + "\n")
    sys.exit(1)
'''


def fake_pip(folder: Path) -> list[str]:
    """Write the stand-in into `folder`; the command to run it. Every call's arguments are appended to
    `<script>.calls` (see `pip_calls`)."""
    script = folder / "fake_pip.py"
    script.write_text(_SCRIPT)
    return [sys.executable, str(script)]


def pip_calls(command: list[str]) -> list[list[str]]:
    """The arguments of every call made to the stand-in `command` runs."""
    calls = Path(command[-1] + ".calls")
    return [line.split() for line in calls.read_text().splitlines()] if calls.is_file() else []
