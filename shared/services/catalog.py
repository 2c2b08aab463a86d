"""The curated catalog: Microsoft's environments, loaded read-only from a folder of asset layouts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from shared.domain.definition import parse_document
from shared.domain.errors import EnvhubError
from shared.domain.records import EnvironmentRecord
from shared.services.contexts import ContextService
from shared.services.describing import describe
from shared.sources.curated_assets import is_asset_folder, load_asset
from shared.sources.folders import ContextFolder

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
                loaded = load_asset(asset)
                submission = parse_document(loaded.document, curated=True, where=str(asset.name))
                source = None
                definition = submission.definition
                if loaded.context_dir is not None:
                    source = ContextFolder(loaded.context_dir)
                    contexts.import_source(source)
                    build = {**loaded.document["build"], "context": source.manifest.digest}
                    definition = parse_document({**loaded.document, "build": build}, curated=True).definition
                described = describe(definition, source)
            except EnvhubError as error:
                log.warning("curated asset %s left out: %s", asset.name, error)
                continue
            name = submission.name or asset.name
            records[name.lower()] = EnvironmentRecord(
                workspace=CURATED_WORKSPACE, name=name, version=submission.version or "1",
                description=described, curated=True, created_at=clock(),
            )
        log.info("curated catalog: %d environments from %s", len(records), folder)
        return cls(records)

    def get(self, name: str) -> EnvironmentRecord | None:
        """A curated environment by name, any case."""
        return self._records.get(name.lower())

    def all(self) -> list[EnvironmentRecord]:
        """Every curated environment, by name."""
        return sorted(self._records.values(), key=lambda r: r.name)
