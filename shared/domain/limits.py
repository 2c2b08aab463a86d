"""Bounds on parsed definitions: node count (aliases counted as expanded), depth, string length, map sizes.

Pure: a checker over a tree given by two functions (a node's children, a node's text), so the same walk serves
parsed Python values and PyYAML's composed nodes. Shared subtrees (YAML aliases) are measured once and then
counted as often as they are referenced, from a memo keyed by id(): an alias bomb is refused after walking each
distinct node once, never by expanding it. The same walk refuses strings that are not Unicode (lone surrogates).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.errors import InvalidDefinition

MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_STRING = 64 * 1024
MAX_ENTRIES = 100  # tags, properties
COUNTED_MAPS = ("tags", "properties")


class LimitExceeded(InvalidDefinition):
    """A definition is larger, deeper or longer than the configured bounds."""

    slug = "limit-exceeded"


@dataclass(frozen=True)
class DocumentLimits:
    """How big a definition may be once aliases are expanded."""

    max_nodes: int = MAX_NODES
    max_depth: int = MAX_DEPTH
    max_string: int = MAX_STRING
    max_entries: int = MAX_ENTRIES


DEFAULT_LIMITS = DocumentLimits()

Children = Callable[[Any], Sequence[Any] | None]
Text = Callable[[Any], str | None]
Locate = Callable[[Any], str | None]


def value_children(value: Any) -> Sequence[Any] | None:
    """A parsed value's children: a mapping's keys and values, a list's items; None for a scalar."""
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, list | tuple):
        return value
    return None


def value_text(value: Any) -> str | None:
    """A parsed value's text, for the string-length bound."""
    return value if isinstance(value, str) else None


def check_tree(root: Any, *, children: Children, text: Text, limits: DocumentLimits = DEFAULT_LIMITS,
               where: str = "<document>", locate: Locate | None = None) -> int:
    """Walk `root` within the bounds and return its expanded node count; raise LimitExceeded at the first excess.

    A node already measured is counted again by its memoised size and height without being walked again; a node
    met again while it is being walked is a cycle (its expansion is infinite) and is refused."""
    memo: dict[int, tuple[int, int]] = {}  # id -> (expanded node count, height)
    active: set[int] = set()
    total = 0

    def refuse(detail: str, node: Any) -> LimitExceeded:
        mark = locate(node) if locate is not None else None
        return LimitExceeded(detail, where=f"{where}:{mark}" if mark else where)

    def count(size: int, node: Any) -> None:
        nonlocal total
        total += size
        if total > limits.max_nodes:
            raise refuse(f"the definition has more than {limits.max_nodes} values (aliases counted as expanded)",
                         node)

    def too_deep(node: Any) -> LimitExceeded:
        return refuse(f"the definition is nested deeper than {limits.max_depth} levels", node)

    def visit(node: Any, depth: int) -> tuple[int, int]:
        key = id(node)
        known = memo.get(key)
        if known is not None:
            count(known[0], node)
            if depth + known[1] - 1 > limits.max_depth:
                raise too_deep(node)
            return known
        if key in active:
            raise refuse("the definition refers to itself (a recursive alias)", node)
        if depth > limits.max_depth:
            raise too_deep(node)
        count(1, node)
        value = text(node)
        if value is not None and len(value) > limits.max_string:
            raise refuse(f"a string has {len(value)} characters; at most {limits.max_string} are allowed", node)
        if value is not None and not _unicode(value):
            # JSON's and YAML's "\udcff" escapes make lone surrogates, which no store or response can encode.
            mark = locate(node) if locate is not None else None
            raise InvalidDefinition("a string holds a lone surrogate escape (such as \\udcff), which is no character",
                                    where=f"{where}:{mark}" if mark else where)
        size, height = 1, 1
        kids = children(node)
        if kids:
            active.add(key)
            for kid in kids:
                kid_size, kid_height = visit(kid, depth + 1)
                size += kid_size
                height = max(height, kid_height + 1)
            active.discard(key)
        memo[key] = (size, height)
        return size, height

    visit(root, 1)
    return total


def _unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf8")
    except UnicodeEncodeError:
        return False
    return True


def check_value(value: Any, *, limits: DocumentLimits = DEFAULT_LIMITS, where: str = "<document>") -> int:
    """check_tree over parsed Python values (JSON or constructed YAML)."""
    return check_tree(value, children=value_children, text=value_text, limits=limits, where=where)


def check_document(doc: Any, *, limits: DocumentLimits = DEFAULT_LIMITS, where: str = "") -> None:
    """A definition document within bounds: the whole tree, and at most `max_entries` tags and properties."""
    check_value(doc, limits=limits, where=where or "<document>")
    if isinstance(doc, dict):
        for field in COUNTED_MAPS:
            entries = doc.get(field)
            if isinstance(entries, dict | list) and len(entries) > limits.max_entries:
                raise LimitExceeded(f"'{field}' has {len(entries)} entries; at most {limits.max_entries} are allowed",
                                    where=f"{where}#{field}" if where else field)
