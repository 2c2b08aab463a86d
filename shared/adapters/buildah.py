"""The local builder: buildah with chroot isolation and vfs storage under the data folder, pushing to a registry."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from shared.adapters.buildah_cli import Buildah
from shared.adapters.children import die_with_parent
from shared.domain.builds import BuiltImage, RunState, RunStatus
from shared.domain.errors import BuildCancelled, BuilderUnavailable, BuildFailed, InvalidDefinition
from shared.domain.images import ImageRef
from shared.domain.outbound import Allowlist
from shared.domain.plans import BuildPlan
from shared.ports import ContextSource

log = logging.getLogger(__name__)
# Lists what the image has, without failing when it has no Python or conda.
# Lines that mean a registry could not be reached: a fault of the moment, worth a retry, not the definition's.
_UNREACHABLE = re.compile(r"connection refused|no such host|i/o timeout|TLS handshake timeout|"
                          r"connection reset|503 Service Unavailable|502 Bad Gateway|too many requests", re.I)
_PACKAGES_SCRIPT = (
    "if command -v conda >/dev/null 2>&1; then conda list --export 2>/dev/null; fi; "
    "for py in python3 python; do if command -v $py >/dev/null 2>&1; "
    "then $py -m pip freeze --all 2>/dev/null; break; fi; done"
)


class _Run:
    """One build running in a thread of this process: its log, and its outcome once it ends."""

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self.lines: list[str] = []
        self.state = RunState.QUEUED
        self.digest: str | None = None
        self.packages: list[str] = []
        self.reason: str | None = None
        self.cancel = threading.Event()

    def status(self, offset: int) -> RunStatus:
        state = self.state  # read first: once a state is final, every log line is already appended
        lines = self.lines[offset:]  # slicing is atomic under the GIL
        return RunStatus(state=state, log=lines, log_offset=offset + len(lines), digest=self.digest,
                         packages=self.packages, reason=self.reason)


class BuildahBuilder:
    """Runs `buildah bud`/`push` as subprocesses, each build in a thread of its own; one instance per
    data folder. A run outlives the call that starts it, as an ACR Tasks run does; a finished run's
    outcome is kept on disk, and a run whose process died is reported LOST so that it is started again."""

    name = "buildah"

    def __init__(self, root: Path, *, insecure_registries: frozenset[str] = frozenset(),
                 unqualified_registry: str | None = None, parallel: int = 2, allowed: Allowlist | None = None) -> None:
        self.root = root
        self.buildah = Buildah(root, insecure_registries=insecure_registries,
                               unqualified_registry=unqualified_registry, allowed=allowed)
        self._slots = threading.BoundedSemaphore(max(1, parallel))  # runs past the limit stay QUEUED
        (root / "runs").mkdir(exist_ok=True)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        # The first builder of a data folder holds its lock while it lives; only it clears what runs of a killed
        # process left behind (another process's builder, such as a CLI beside `envhub serve`, must not).
        self._owner = _take_lock(root / "builder.lock")
        if self._owner is not None:
            self.clean_leftovers()

    available = staticmethod(Buildah.available)

    def clean_leftovers(self) -> None:
        """Remove what runs of an earlier process left: their context folders under runs/ (their <id>.json
        outcomes stay) and the working containers in this builder's own storage. Runs of this instance are
        never touched: it is called before any starts."""
        with self._lock:
            if self._runs:
                return
            for entry in (self.root / "runs").iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    log.info("removing the folder of an interrupted build run: %s", entry)
                    shutil.rmtree(entry, ignore_errors=True)
            if not self.available():
                return
            try:
                containers = self.buildah.containers()
                if containers:
                    log.warning("removing %d buildah working containers left by an interrupted build",
                                len(containers))
                    self.buildah.remove_all_containers()
            except (BuilderUnavailable, ValueError, subprocess.SubprocessError) as error:
                log.warning("could not clear leftover buildah containers under %s: %s", self.root, error)

    def check(self) -> None:
        """buildah runs."""
        self.buildah.check()

    def start(self, *, build_id: str, plan: BuildPlan, context: ContextSource, targets: list[ImageRef],
              platform: str, timeout: float, agent_pool: str | None) -> str:
        if not self.available():
            raise BuilderUnavailable("buildah is not installed (`make run` installs it)", where="buildah")
        self._registries(plan.dockerfile, plan.dockerfile_path)  # an image off the list fails before the run
        run = _Run(f"{build_id[:12]}-{uuid.uuid4().hex[:8]}")
        with self._lock:
            self._runs[run.id] = run
        # The thread that starts buildah must live as long as buildah does: children get
        # PR_SET_PDEATHSIG, which fires when the thread that forked them ends.
        threading.Thread(target=self._execute, args=(run, plan, context, targets, timeout),
                         name=f"buildah-{run.id}", daemon=True).start()
        return run.id

    def poll(self, run_id: str, log_offset: int) -> RunStatus:
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            return run.status(log_offset)
        result = self._result_path(run_id)
        if result.is_file():  # finished before this process started
            return RunStatus.model_validate_json(result.read_text()).model_copy(update={"log": [],
                                                                                        "log_offset": log_offset})
        return RunStatus(state=RunState.LOST, log_offset=log_offset,
                         reason="the process running this build ended before the build did")

    def cancel(self, run_id: str) -> None:
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            run.cancel.set()

    def _result_path(self, run_id: str) -> Path:
        return self.root / "runs" / f"{run_id}.json"

    def _execute(self, run: _Run, plan: BuildPlan, context: ContextSource, targets: list[ImageRef],
                 timeout: float) -> None:
        folder = self.root / "runs" / run.id
        self._slots.acquire()
        run.state = RunState.RUNNING
        try:
            _materialise(context, folder)
            built = self.build_folder(folder, plan.dockerfile_path, targets, run.lines.append, timeout,
                                      run.cancel.is_set)
            run.digest, run.packages, run.state = built.digest, built.packages, RunState.SUCCEEDED
        except BuildFailed as error:
            run.reason, run.state = str(error), RunState.FAILED
        except BuildCancelled as error:
            run.reason, run.state = str(error), RunState.CANCELLED
        except Exception as error:  # a fault of the moment (registry down, buildah killed): start it again
            log.warning("build run %s stopped: %s", run.id, error)
            run.reason, run.state = str(error), RunState.LOST
        finally:
            self._slots.release()
            shutil.rmtree(folder, ignore_errors=True)
            # The outcome outlives this process, so a restarted server can still tell how the run ended.
            final = run.status(len(run.lines)).model_copy(update={"log": []})
            self._result_path(run.id).write_text(final.model_dump_json())

    def build_folder(self, context: Path, dockerfile: str, targets: list[ImageRef], log: Callable[[str], None],
               timeout: float, cancelled: Callable[[], bool]) -> BuiltImage:
        """Build a folder and push it to every target, here and now (a run's work, and the benchmark's
        baseline)."""
        local = f"localhost/envhub-build/{targets[0].repository.replace('/', '-')}:{int(time.time() * 1000)}"
        started = time.monotonic()
        env = None  # without a list, buildah's own environment
        if self.buildah.allowed is not None:
            env = self.buildah.env(self._registries((context / dockerfile).read_text(errors="replace"), dockerfile))
        tail: list[str] = []

        def keep(line: str) -> None:
            tail[:] = [*tail[-49:], line]
            log(line)

        code = self._stream(
            # --pull-always: the base digests recorded before the build are the ones it uses
            self.buildah.command("bud", "--isolation", "chroot", "--pull-always", "-f", str(context / dockerfile),
                          "-t", local, str(context)),
            keep, timeout, cancelled, env,
        )
        if code < 0:
            raise BuilderUnavailable(f"buildah was killed by signal {-code}", where="buildah")
        if code != 0:
            if any(_UNREACHABLE.search(line) for line in tail):
                raise BuilderUnavailable(f"a registry could not be reached while building: {_last_error(tail)}",
                                         where=dockerfile)
            raise BuildFailed(f"{_last_error(tail)} (buildah bud exited with {code})", where=dockerfile)
        try:
            packages = self._packages(local, log)
            digest = ""
            for target in targets:
                digest_file = self.root / "run" / f"digest-{os.getpid()}-{threading.get_ident()}"
                remaining = max(1.0, timeout - (time.monotonic() - started))
                push = self.buildah.command("push", self.buildah.tls(target), "--digestfile", str(digest_file), local,
                                            f"docker://{target}")
                code = self._stream(push, log, remaining, cancelled, env)
                if code != 0:
                    raise BuilderUnavailable(f"pushing to {target.registry} failed (exit {code})", where=str(target))
                digest = digest_file.read_text().strip()
                digest_file.unlink(missing_ok=True)
            return BuiltImage(digest=digest, packages=packages)
        finally:
            self.buildah.run("rmi", "-f", local)

    def _packages(self, image: str, log: Callable[[str], None]) -> list[str]:
        made = self.buildah.run("from", "--pull=never", image)
        if made.returncode != 0:
            return []
        container = made.stdout.strip().splitlines()[-1]
        try:
            listed = self.buildah.run("run", "--isolation", "chroot", container, "--", "/bin/sh", "-c",
                                      _PACKAGES_SCRIPT, timeout=300)
            packages = [line.strip() for line in listed.stdout.splitlines() if line.strip()
                        and not line.startswith("#")]
            log(f"envhub: {len(packages)} installed packages recorded")
            return packages
        except subprocess.TimeoutExpired:
            return []
        finally:
            self.buildah.run("rm", container)

    def _registries(self, dockerfile: str, where: str) -> list[str]:
        """The registries a Dockerfile pulls from, each checked against the allowlist (BuildFailed when one is off
        it: final, as the definition names it); none without a list."""
        allowed = self.buildah.allowed
        try:
            return [] if allowed is None else allowed.check_dockerfile(dockerfile, where=where)
        except InvalidDefinition as error:
            raise BuildFailed(error.detail, where=error.where) from error

    def _stream(self, command: list[str], log: Callable[[str], None], timeout: float,
                cancelled: Callable[[], bool], env: dict[str, str] | None = None) -> int:
        """Run a command, sending each output line to `log`; kill it on timeout or cancellation."""
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env or self.buildah.env(), start_new_session=True, errors="replace",
                                   preexec_fn=die_with_parent)
        assert process.stdout is not None
        reader = threading.Thread(target=_pump, args=(process.stdout, log), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None:
                if cancelled():
                    _kill(process)
                    raise BuildCancelled("the build was cancelled")
                if time.monotonic() > deadline:
                    _kill(process)
                    raise BuildFailed(f"the build took longer than {timeout:.0f} s and was stopped", where="timeout")
                time.sleep(0.2)
        finally:
            reader.join(timeout=5)
        return process.returncode


def _take_lock(path: Path) -> IO[str] | None:
    """An exclusive lock on `path`, held while the returned file stays open; None when another holds it."""
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _materialise(context: ContextSource, folder: Path) -> None:
    """Write every file and folder of the context under `folder`, with its executable bit."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = context.manifest
    for rel in manifest.dirs:
        (folder / rel).mkdir(parents=True, exist_ok=True)
    for entry in manifest.files:
        path = folder / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with context.open(entry.path) as source, path.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        path.chmod(0o755 if entry.executable else 0o644)


def _last_error(lines: list[str]) -> str:
    """The line that says what went wrong, as buildah prints it last."""
    for line in reversed(lines):
        if line.lower().startswith(("error", "time=")) or "error" in line.lower():
            return line.strip()[:500]
    return lines[-1].strip()[:500] if lines else "no output"


def _pump(stream: IO[str], log: Callable[[str], None]) -> None:
    for line in stream:
        log(line.rstrip("\n"))


def _kill(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
