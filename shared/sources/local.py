"""A definition on the user's disk, read and described the same way the service describes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.domain.definition import Submission, parse_document
from shared.domain.describing import describe
from shared.domain.errors import InvalidDefinition
from shared.domain.records import Description
from shared.sources.curated_assets import is_asset_folder, load_asset
from shared.sources.folders import ContextFolder
from shared.sources.yaml_files import LoadedDocument, load_environment_yaml


@dataclass(frozen=True)
class LocalDefinition:
    """A loaded definition, its context folder (if any) and what envhub derives from it."""

    loaded: LoadedDocument
    document: dict[str, Any]  # as the HTTP API takes it: build by context digest
    submission: Submission
    context: ContextFolder | None
    description: Description


def load(path: Path) -> LoadedDocument:
    """An environment YAML file or a curated asset folder."""
    if is_asset_folder(path):
        return load_asset(path)
    if path.is_dir():
        raise InvalidDefinition("a folder must be a curated asset (with asset.yaml); otherwise name the YAML file",
                                where=str(path))
    return load_environment_yaml(path)


def describe_local(path: Path) -> LocalDefinition:
    """Load, check and describe a definition from disk, with nothing sent anywhere."""
    loaded = load(path)
    context = None if loaded.context_dir is None else ContextFolder(loaded.context_dir)
    document = dict(loaded.document)
    if context is not None:
        document["build"] = {**document.get("build", {}), "context": context.manifest.digest}
    submission = parse_document(document, curated=loaded.curated, where=str(path))
    return LocalDefinition(loaded, document, submission, context, describe(submission.definition, context))
