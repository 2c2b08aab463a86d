"""The curated catalog: Microsoft's environments, loaded read-only from a folder of asset layouts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from shared.domain.errors import EnvhubError
from shared.domain.records import EnvironmentRecord
from shared.services.contexts import ContextService
from shared.sources.curated_assets import is_asset_folder
from shared.sources.local import describe_local

log = logging.getLogger(__name__)
CURATED_WORKSPACE = "azureml"  # Azure ML's shared registry of curated environments


class Catalog:
    """Curated environments by name (one version each); registering under their names is refused."""

    def __init__(self, records: dict[str, EnvironmentRecord] | None = None) -> None:
        self._records = records or {}

    @classmethod
    def load(cls, folder: Path | None, contexts: ContextService,
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Catalog:
        """Read every asset folder below `folder`; a broken asset is logged and left out, not fatal."""
        records: dict[str, EnvironmentRecord] = {}
        if folder is None:
            return cls(records)
        for asset in sorted(p for p in folder.iterdir() if is_asset_folder(p)):
            try:
                local = describe_local(asset)
                if local.context is not None:
                    contexts.import_source(local.context)  # so builds and reads find it by digest
            except EnvhubError as error:
                log.warning("curated asset %s left out: %s", asset.name, error)
                continue
            name = local.submission.name or asset.name
            records[name.lower()] = EnvironmentRecord(
                workspace=CURATED_WORKSPACE, name=name, version=local.submission.version or "1",
                description=local.description, curated=True, created_at=clock(),
            )
        log.info("curated catalog: %d environments from %s", len(records), folder)
        return cls(records)

    def get(self, name: str) -> EnvironmentRecord | None:
        """A curated environment by name, any case."""
        return self._records.get(name.lower())

    def all(self) -> list[EnvironmentRecord]:
        """Every curated environment, by name."""
        return sorted(self._records.values(), key=lambda r: r.name)
