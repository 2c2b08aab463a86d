"""Azure ML CLI v2 environment YAML files and the files they name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from shared.domain.errors import InvalidDefinition
from shared.domain.limits import DEFAULT_LIMITS, DocumentLimits, LimitExceeded, check_tree

YAML_SUFFIXES = (".yml", ".yaml")
MAX_YAML_BYTES = 1024 * 1024  # one definition, conda file or asset file


@dataclass(frozen=True)
class LoadedDocument:
    """A definition read from disk: fields as a mapping (conda inline), and the context folder if any."""

    document: dict[str, Any]
    source: Path
    context_dir: Path | None = None
    curated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class BoundedSafeLoader(yaml.SafeLoader):
    """A SafeLoader whose composer stops past `limits.max_depth` levels; `load_bounded` then measures the
    composed node graph (aliases counted as expanded) before anything is constructed."""

    def __init__(self, stream: str, limits: DocumentLimits = DEFAULT_LIMITS) -> None:
        super().__init__(stream)
        self.limits = limits
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > self.limits.max_depth:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise LimitExceeded(f"the YAML is nested deeper than {self.limits.max_depth} levels",
                                    where=f"{mark.line + 1}:{mark.column + 1}")
            node: Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        # PyYAML's constructors trust a scalar to fit its tag: `!!int ""`, `!!bool x`, `!!timestamp 2024-13-45`
        # or an integer past Python's 4300-digit limit raise plain IndexError, KeyError or ValueError otherwise.
        try:
            return super().construct_object(node, deep)
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as error:
            raise yaml.constructor.ConstructorError(
                None, None, f"the value does not fit its type {node.tag} ({error})", node.start_mark) from error


def _node_children(node: Any) -> list[Any] | None:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return None


def _node_text(node: Any) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None


def _node_mark(node: Any) -> str | None:
    mark = getattr(node, "start_mark", None)
    return None if mark is None else f"{mark.line + 1}:{mark.column + 1}"


def load_bounded(text: str, *, limits: DocumentLimits = DEFAULT_LIMITS, where: str = "<yaml>") -> Any:
    """yaml.safe_load within `limits`: composed, measured without expanding aliases, then constructed."""
    loader = BoundedSafeLoader(text, limits)
    try:
        try:
            node = loader.get_single_node()
        except LimitExceeded as error:
            raise LimitExceeded(error.detail, where=f"{where}:{error.where}") from None
        if node is None:
            return None
        check_tree(node, children=_node_children, text=_node_text, limits=limits, where=where, locate=_node_mark)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: Path, *, limits: DocumentLimits = DEFAULT_LIMITS, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Parse one YAML file within bounds; a syntax error names the file, line and column."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as error:
        raise InvalidDefinition("the file does not exist", where=str(path)) from error
    if size > max_bytes:
        raise LimitExceeded(f"the file has {size} bytes; at most {max_bytes} are read", where=str(path))
    try:
        text = path.read_text(encoding="utf8")
    except FileNotFoundError as error:
        raise InvalidDefinition("the file does not exist", where=str(path)) from error
    except (IsADirectoryError, UnicodeDecodeError) as error:
        raise InvalidDefinition(f"cannot be read as a YAML text file ({error.__class__.__name__})",
                                where=str(path)) from error
    try:
        return load_bounded(text, limits=limits, where=str(path))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidDefinition(f"malformed YAML: {problem}", where=where) from error


def load_environment_yaml(path: Path) -> LoadedDocument:
    """Read an environment YAML: conda_file paths are read in, build.path checked to stay in the folder."""
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise InvalidDefinition("an environment YAML is a mapping of fields", where=str(path))
    return resolve_files(doc, path)


def resolve_files(doc: dict[str, Any], path: Path) -> LoadedDocument:
    """Replace a conda_file path by its content and locate a build context, relative to `path`'s folder."""
    folder = path.parent
    doc = dict(doc)
    conda = doc.get("conda_file")
    if isinstance(conda, str):
        conda_path = folder / conda
        if not conda_path.is_file():
            raise InvalidDefinition(f"the conda file '{conda}' does not exist (looked in {folder}/)",
                                    where=f"{path}#conda_file")
        doc["conda_file"] = read_yaml(conda_path)
        if doc["conda_file"] is None:
            raise InvalidDefinition(f"the conda file '{conda}' is empty", where=f"{path}#conda_file")
    context_dir = None
    build = doc.get("build")
    if isinstance(build, dict) and "path" in build:
        context_dir = context_folder(folder, build["path"], where=f"{path}#build.path")
        doc["build"] = {k: v for k, v in build.items() if k != "path"}
    return LoadedDocument(document=doc, source=path, context_dir=context_dir)


def context_folder(folder: Path, value: object, *, where: str) -> Path:
    """The build context named by `build.path`: a folder inside the YAML's own folder."""
    if not isinstance(value, str) or not value:
        raise InvalidDefinition("build.path is a folder relative to the YAML file", where=where)
    if "://" in value or "#" in value:
        raise InvalidDefinition(f"'{value}' is a remote location; envhub builds from local folders", where=where)
    candidate = Path(value)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise InvalidDefinition(f"'{value}' leaves the YAML's folder; keep the build context beside the YAML",
                                where=where)
    resolved = (folder / candidate).resolve()
    root = folder.resolve()
    if resolved != root and root not in resolved.parents:
        raise InvalidDefinition(f"'{value}' is a link to outside the YAML's folder", where=where)
    if not resolved.is_dir():
        raise InvalidDefinition(f"the build context folder '{value}' does not exist", where=where)
    return resolved
