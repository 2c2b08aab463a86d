"""Base images of a Dockerfile, read with dockerfile-parse (continuations, escapes, ARG defaults, stages)."""

from __future__ import annotations

import io
import re

from dockerfile_parse import DockerfileParser

from shared.domain.errors import InvalidDefinition

# Build-time templates such as {{latest-image-tag:\d{8}\.v\d+}} are kept as written; the parser would
# otherwise treat their backslashes as escapes, so they are swapped out while it reads. A template holds no
# whitespace: a stray `{{` must not swallow the words up to the next template's `}}`.
_TEMPLATE = re.compile(r"\{\{\S*?\}\}(?!\})")
_PLACEHOLDER = "envhubtemplate{}x"
NOT_AN_IMAGE = "scratch"


def base_images(text: str, *, where: str = "Dockerfile") -> list[str]:
    """Every image a Dockerfile builds FROM, in order, without stage references or `scratch`."""
    templates: list[str] = []

    def protect(match: re.Match[str]) -> str:
        templates.append(match.group())
        return _PLACEHOLDER.format(len(templates) - 1)

    parser = DockerfileParser(fileobj=io.BytesIO(_TEMPLATE.sub(protect, text).encode()), env_replace=True)
    try:
        structure, parents = parser.structure, parser.parent_images
    except (LookupError, ValueError, TypeError, AttributeError) as error:
        # dockerfile-parse trusts its input: a bare `ARG` before the first FROM, for one, is an IndexError.
        raise InvalidDefinition(f"the Dockerfile cannot be read ({error.__class__.__name__}: {error})",
                                where=where) from error
    for item in structure:
        if item["instruction"] == "ARG" and not item["value"].strip():
            raise InvalidDefinition(f"line {item['startline'] + 1}: ARG names no variable", where=where)
    froms = [item for item in structure if item["instruction"] == "FROM"]
    if not froms:
        raise InvalidDefinition("the Dockerfile has no FROM instruction", where=where)
    for item in froms:
        if not item["value"].strip():
            raise InvalidDefinition(f"line {item['startline'] + 1}: FROM names no image", where=where)
    stages: set[str] = set()
    images: list[str] = []
    for item, parent in zip(froms, parents, strict=True):
        # dockerfile-parse takes a flag it does not know (or a --platform with no image after it) for the image.
        if not parent or parent.startswith("-"):
            raise InvalidDefinition(f"line {item['startline'] + 1}: FROM names no image", where=where)
        reference = _restore(parent, templates)
        if reference.lower() not in stages and reference != NOT_AN_IMAGE and reference not in images:
            images.append(reference)
        words = item["value"].split()
        if len(words) >= 3 and words[-2].lower() == "as":
            stages.add(words[-1].lower())
    return images


def _restore(reference: str, templates: list[str]) -> str:
    for index, template in enumerate(templates):
        reference = reference.replace(_PLACEHOLDER.format(index), template)
    return reference
