"""Build plans: the Dockerfile and files each kind of environment is built from."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO

import yaml
from pydantic import BaseModel, ConfigDict

from shared.domain.context import ContextManifest, FileEntry
from shared.domain.definition import Definition, Kind
from shared.domain.errors import NothingToBuild

CONDA_FILE = "azureml-environment-setup/conda_dependencies.yaml"


class GeneratedFile(BaseModel):
    """A file the plan writes into the build context."""

    model_config = ConfigDict(frozen=True)

    path: str
    content: str


class BuildPlan(BaseModel):
    """How to build an environment's image: a context (uploaded or generated) and a Dockerfile."""

    model_config = ConfigDict(frozen=True)

    context_digest: str | None  # the uploaded context, or None for a generated one
    dockerfile_path: str
    dockerfile: str
    generated: tuple[GeneratedFile, ...] = ()


def conda_prefix(hash_hex: str) -> str:
    """Where Azure ML materialises a system-managed conda environment."""
    return f"/azureml-envs/azureml_{hash_hex[:32]}"


def system_managed_dockerfile(image: str, hash_hex: str) -> str:
    """Azure ML's two steps: (1) the base image and Docker steps, (2) the conda environment on PATH."""
    prefix = conda_prefix(hash_hex)
    return (
        "# step 1: the base image\n"
        f"FROM {image}\n"
        "USER root\n"
        "# step 2: the conda environment, materialised under /azureml-envs and put first on PATH\n"
        f"COPY {CONDA_FILE} /tmp/envhub/conda_dependencies.yaml\n"
        f"RUN conda env create -p {prefix} -f /tmp/envhub/conda_dependencies.yaml -q "
        "&& rm -rf /tmp/envhub && conda clean -a -y\n"
        f"ENV PATH={prefix}/bin:$PATH\n"
        f"ENV AZUREML_CONDA_ENVIRONMENT_PATH={prefix}\n"
        f"ENV CONDA_DEFAULT_ENV={prefix}\n"
    )


def plan_for(definition: Definition, hash_hex: str, dockerfile_text: str | None = None) -> BuildPlan:
    """The plan for a definition; user images have none."""
    if definition.build is not None:
        if dockerfile_text is None:
            raise ValueError("a build plan needs the context's Dockerfile")
        return BuildPlan(context_digest=definition.build.context, dockerfile_path=definition.build.dockerfile,
                         dockerfile=dockerfile_text)
    if definition.kind is Kind.SYSTEM_MANAGED and definition.image and definition.conda_file is not None:
        conda = yaml.safe_dump(definition.conda_file, sort_keys=False)
        return BuildPlan(context_digest=None, dockerfile_path="Dockerfile",
                         dockerfile=system_managed_dockerfile(definition.image, hash_hex),
                         generated=(GeneratedFile(path=CONDA_FILE, content=conda),))
    raise NothingToBuild(
        f"'{definition.image}' is the user's own image: envhub does not build it, only checks that it exists",
        where="image",
    )


class GeneratedContext:
    """A generated plan's build context, held in memory: its files and its Dockerfile."""

    def __init__(self, plan: BuildPlan) -> None:
        files = {generated.path: generated.content.encode() for generated in plan.generated}
        files[plan.dockerfile_path] = plan.dockerfile.encode()
        self._files = files
        self._manifest = ContextManifest.of(
            FileEntry(path=path, executable=False, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            for path, data in files.items())

    @property
    def manifest(self) -> ContextManifest:
        """Its manifest."""
        return self._manifest

    def open(self, rel: str) -> BinaryIO:
        """A member for reading."""
        return io.BytesIO(self._files[rel])

    def read_text(self, rel: str) -> str | None:
        """A member as text, or None when absent."""
        data = self._files.get(rel)
        return None if data is None else data.decode()
