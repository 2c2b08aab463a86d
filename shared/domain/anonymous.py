"""Azure ML's anonymous environment version, computed exactly as azure-ai-ml computes it on the client."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import yaml
from pathspec.patterns.gitignore.basic import GitIgnoreBasicPattern
from pathspec.util import normalize_file

from shared.domain.context import ContextManifest
from shared.domain.definition import Definition

# azure-ai-ml seeds its folder hash with this text; it is part of the algorithm.
_FOLDER_SEED = b"Initialize for october 2021 AML CLI version"
IGNORE_FILES = (".amlignore", ".gitignore")  # the first present wins, as in azure-ai-ml
_CHUNK = 1 << 20


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf8")).hexdigest()


def _chain(acc: str, text: str) -> str:
    # azure-ai-ml writes `hash_str = hash_str.join(sha(x))`: the running string joins the characters of
    # the new digest. Odd, but it is what the service expects, so it is reproduced as is.
    return acc.join(_sha(text))


def _dump(mapping: dict[str, Any]) -> str:
    return yaml.dump(mapping, Dumper=yaml.Dumper, sort_keys=True)


def image_version(image: str, conda: dict[str, Any] | None, inference_config: dict[str, Any] | None) -> str:
    """The version of an anonymous environment made from an image (and conda file)."""
    acc = _chain("", image)
    if inference_config:
        acc = _chain(acc, _dump(inference_config))
    if conda:
        acc = _chain(acc, _dump(conda))
    return _sha(acc)


def build_version(folder_hash: str, dockerfile_path: str | None) -> str:
    """The version of an anonymous environment made from a build context."""
    acc = _chain("", folder_hash)
    if dockerfile_path:
        acc = acc.join(_sha(dockerfile_path))
    return _sha(acc)


class _IgnoreRules:
    """.amlignore or .gitignore lines, matched last-wins as azure-ai-ml matches them."""

    def __init__(self, text: str | None) -> None:
        lines = [line.rstrip() for line in (text or "").splitlines(keepends=True)]
        self.patterns = [GitIgnoreBasicPattern(line) for line in lines]

    def excluded(self, path: str) -> bool:
        if not self.patterns:
            return False
        normal = normalize_file(path)
        matched = False
        for pattern in self.patterns:
            if pattern.include is not None and pattern.match_file(normal) is not None:
                matched = pattern.include
        return matched


def folder_hash(manifest: ContextManifest, open_file: Callable[[str], BinaryIO]) -> str:
    """azure-ai-ml's `get_object_hash` over a context: names and contents, depth first, lower-case order."""
    ignore_text = None
    for name in IGNORE_FILES:
        if manifest.get(name) is not None:
            with open_file(name) as handle:
                ignore_text = handle.read().decode("utf8", errors="replace")
            break
    rules = _IgnoreRules(ignore_text)
    children: dict[str, list[tuple[str, bool]]] = {}
    for folder in manifest.dirs:
        children.setdefault(posixpath.dirname(folder), []).append((folder, True))
    for entry in manifest.files:
        children.setdefault(posixpath.dirname(entry.path), []).append((entry.path, False))
    digest = hashlib.sha256(_FOLDER_SEED)
    for path, is_dir in _walk(children, "", rules):
        digest.update(posixpath.basename(path).encode())
        if not is_dir:
            with open_file(path) as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _walk(children: dict[str, list[tuple[str, bool]]], folder: str, rules: _IgnoreRules) -> Iterator[tuple[str, bool]]:
    for path, is_dir in sorted(children.get(folder, []), key=lambda item: (item[0].lower(), item[0])):
        if rules.excluded(path):
            continue
        yield path, is_dir
        if is_dir:
            yield from _walk(children, path, rules)


def anonymous_version(
    definition: Definition,
    manifest: ContextManifest | None = None,
    open_file: Callable[[str], BinaryIO] | None = None,
) -> str:
    """What azure-ai-ml gives as the version of this definition registered anonymously."""
    if definition.image is not None:
        return image_version(definition.image, definition.conda_file, definition.inference_config)
    if definition.build is None or manifest is None or open_file is None:
        raise ValueError("a build definition needs its context to compute the anonymous version")
    return build_version(folder_hash(manifest, open_file), definition.build.dockerfile_path)
