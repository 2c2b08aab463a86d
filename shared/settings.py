"""Settings, read once from ENVHUB_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.images import DOCKER_HUB


class Settings(BaseSettings):
    """Everything envhub can be told at start-up; each adapter is chosen from these once."""

    model_config = SettingsConfigDict(env_prefix="ENVHUB_", extra="ignore")

    data_dir: Path = Path(".envhub")
    store: Literal["sqlite"] = "sqlite"
    contexts: Literal["file"] = "file"
    curated_dir: Path | None = None
    max_upload_bytes: int = 256 * 1024 * 1024  # a compressed build context
    max_context_bytes: int = 2 * 1024 * 1024 * 1024  # the same, expanded
    max_context_files: int = 50_000
    log_level: str = "INFO"

    # The workspace's container registry: host[:port]. Unset, `envhub serve` runs a local one.
    registry: str | None = None
    registry_kind: Literal["oci", "acr"] = "oci"
    registry_port: int = 5000
    insecure_registries: str = ""  # comma-separated hosts reached over plain http
    unqualified_registry: str | None = None  # where `FROM name` goes; the local registry when it runs

    builder: Literal["buildah"] = "buildah"
    queue: Literal["sqlite"] = "sqlite"
    worker: bool = True  # drain the build queue inside this process
    queue_visibility_seconds: float = 60.0
    queue_max_attempts: int = 5
    queue_backoff_seconds: float = 2.0
    build_timeout_seconds: float = 3600.0

    @property
    def local_registry(self) -> bool:
        """Whether envhub runs the registry itself."""
        return self.registry is None

    @property
    def registry_host(self) -> str:
        """The registry's host[:port] as image references name it."""
        return self.registry or f"127.0.0.1:{self.registry_port}"

    @property
    def insecure(self) -> frozenset[str]:
        """Registries spoken to over http: the local one, and any named."""
        named = {h.strip() for h in self.insecure_registries.split(",") if h.strip()}
        return frozenset(named | ({self.registry_host} if self.local_registry else set()))

    @property
    def default_registry(self) -> str:
        """The registry of image names without a host."""
        if self.unqualified_registry:
            return self.unqualified_registry
        return self.registry_host if self.local_registry else DOCKER_HUB
