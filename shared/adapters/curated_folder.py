"""The curated catalog read from a folder of azureml-assets layouts (asset.yaml + spec.yaml + context/)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from shared.domain.context import ContextSource
from shared.domain.errors import EnvhubError
from shared.domain.records import EnvironmentRecord
from shared.ports import ContextStore
from shared.sources.curated_assets import is_asset_folder
from shared.sources.local import describe_local

log = logging.getLogger(__name__)
CURATED_WORKSPACE = "azureml"  # Azure ML's shared registry of curated environments
_CHUNK = 1 << 20


class FolderCatalog:
    """Curated environments by name; their build contexts are copied into the context store at load, so
    that builds and reads find them by digest like any upload."""

    def __init__(self, records: dict[str, EnvironmentRecord] | None = None) -> None:
        self._records = records or {}

    @classmethod
    def load(cls, folder: Path | None, contexts: ContextStore,
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FolderCatalog:
        """Read every asset folder below `folder`; a broken asset is logged and left out, not fatal."""
        records: dict[str, EnvironmentRecord] = {}
        if folder is None:
            return cls(records)
        for asset in sorted(p for p in folder.iterdir() if is_asset_folder(p)):
            try:
                local = describe_local(asset)
                if local.context is not None:
                    _import(local.context, contexts)
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


def _import(source: ContextSource, store: ContextStore) -> None:
    """Copy a readable context into the store: blobs first, the manifest last."""
    manifest = source.manifest
    for entry in manifest.files:
        if not store.has_blob(entry.sha256):
            with source.open(entry.path) as handle:
                store.write_blob(_chunks(handle))
    store.save_manifest(manifest)


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk
