"""The ARM stand-in's local mode: each scheduled run really builds, with envhub's own Builder, into a local registry."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from shared.domain.builds import RunState
from shared.domain.images import ImageRef
from shared.domain.plans import BuildPlan
from shared.ports import Builder
from shared.sources.folders import ContextFolder
from tests.standins.arm import StandInRun

_STATUS = {RunState.QUEUED: "Queued", RunState.RUNNING: "Running", RunState.SUCCEEDED: "Succeeded",
           RunState.FAILED: "Failed", RunState.CANCELLED: "Canceled", RunState.LOST: "Error"}


class LocalRunner:
    """Does what ACR does with a DockerBuildRequest: unpack the uploaded source, build the Dockerfile it names,
    push every `repository:tag` into "its own" registry (here `registry_host`), report the digest."""

    def __init__(self, builder: Builder, registry_host: str, work: Path) -> None:
        self.builder = builder
        self.registry_host = registry_host
        self.work = work

    def schedule(self, run: StandInRun) -> None:
        request = run.request
        folder = self.work / run.run_id
        folder.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(run.source), mode="r:gz") as archive:
            archive.extractall(folder, filter="data")  # what ACR gets is untrusted input too
        context = ContextFolder(folder)
        dockerfile = context.read_text(request["dockerFilePath"])
        if dockerfile is None:
            run.advance("Failed", error=f"{request['dockerFilePath']} is not in the uploaded source")
            return
        plan = BuildPlan(context_digest=None, dockerfile_path=request["dockerFilePath"], dockerfile=dockerfile)
        targets = [self._target(name) for name in request.get("imageNames", [])]
        run.local_id = self.builder.start(build_id=run.run_id, plan=plan, context=context, targets=targets,
                                          platform=request["platform"]["os"].lower(),
                                          timeout=float(request.get("timeout", 3600)), agent_pool=None)

    def refresh(self, run: StandInRun) -> None:
        if run.local_id is None or run.status in ("Succeeded", "Failed", "Canceled", "Error", "Timeout"):
            return
        status = self.builder.poll(run.local_id, run.local_offset)
        # The builder counts lines; ACR's log is a byte stream, which is what the adapter under test reads.
        run.advance(_STATUS[status.state], "".join(f"{line}\n" for line in status.log), error=status.reason,
                    digest=status.digest if status.state is RunState.SUCCEEDED else None)
        run.local_offset = status.log_offset
        for image in run.output_images:
            image["registry"] = self.registry_host

    def cancel(self, run: StandInRun) -> None:
        if run.local_id is not None:
            self.builder.cancel(run.local_id)

    def _target(self, name: str) -> ImageRef:
        repository, _, tag = name.partition(":")
        return ImageRef(registry=self.registry_host, repository=repository, tag=tag or "latest")
