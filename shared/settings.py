"""Settings, read once from ENVHUB_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


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
    page_size: int = 100
    log_level: str = "INFO"
