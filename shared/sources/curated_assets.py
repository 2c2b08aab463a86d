"""Curated environments in azureml-assets' layout: asset.yaml + spec.yaml + environment.yaml + context/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from shared.domain.errors import InvalidDefinition
from shared.sources.yaml_files import LoadedDocument, read_yaml, resolve_files

ASSET_FILE = "asset.yaml"
# Templates resolved at build time stay as written (they live in the Dockerfile and conda files).
BUILD_TIME_TEMPLATES = ("latest-image-tag", "latest-pypi-version")
_TEMPLATE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# The assets repository names the context by its git location at release time; locally it is the
# same folder as {{image.context.path}}.
_REPO_CONTEXT = "{{asset.repo.url}}#{{asset.repo.commit_hash}}:{{asset.repo.build_context.path}}"
AUTO_VERSION = "1"


def is_asset_folder(path: Path) -> bool:
    """Whether `path` is a curated asset folder."""
    return path.is_dir() and (path / ASSET_FILE).is_file()


def load_asset(folder: Path) -> LoadedDocument:
    """Read a curated asset folder into a definition document with its templates resolved."""
    asset = _mapping(read_yaml(folder / ASSET_FILE), folder / ASSET_FILE)
    if asset.get("type", "environment") != "environment":
        raise InvalidDefinition(f"the asset is a {asset.get('type')!r}, not an environment", where=str(folder))
    spec_path = folder / str(asset.get("spec", "spec.yaml"))
    spec = _mapping(read_yaml(spec_path), spec_path)
    extra_path = folder / str(asset.get("extra_config", "environment.yaml"))
    extra = _mapping(read_yaml(extra_path), extra_path) if extra_path.is_file() else {}
    image = extra.get("image") or {}
    context = image.get("context") or {}
    context_dir = str(context.get("dir", "context"))
    version = str(asset.get("version", "auto"))
    values = {
        "asset.name": str(asset.get("name", folder.name)),
        "asset.version": AUTO_VERSION if version == "auto" else version,
        "asset.type": "environment",
        "image.name": str(image.get("name", "")),
        "image.context.dir": context_dir,
        "image.context.path": context_dir,
        "image.dockerfile.path": str(context.get("dockerfile", "Dockerfile")),
    }
    build = spec.get("build")
    if isinstance(build, dict) and build.get("path") == _REPO_CONTEXT:
        spec["build"] = {**build, "path": context_dir}
    resolved = _substitute(spec, values, spec_path)
    loaded = resolve_files(resolved, spec_path)
    return LoadedDocument(document=loaded.document, source=folder, context_dir=loaded.context_dir,
                          curated=True, extra=extra)


def _mapping(value: Any, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidDefinition("expected a mapping of fields", where=str(path))
    return value


def _substitute(value: Any, values: dict[str, str], where: Path) -> Any:
    if isinstance(value, dict):
        return {key: _substitute(item, values, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, values, where) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        if key.split(":", 1)[0] in BUILD_TIME_TEMPLATES:
            return match.group()
        raise InvalidDefinition(f"unknown template '{match.group()}'", where=str(where))

    return _TEMPLATE.sub(replace, value)
