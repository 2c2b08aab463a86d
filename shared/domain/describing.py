"""Describe a definition: check it against its context, then hash it and name its image and bases."""

from __future__ import annotations

from shared.domain import anonymous, hashing
from shared.domain.context import DOCKERIGNORE, ContextSource
from shared.domain.definition import Definition
from shared.domain.dockerfile import base_images
from shared.domain.errors import InvalidDefinition
from shared.domain.records import Description


def describe(definition: Definition, context: ContextSource | None = None) -> Description:
    """Everything derived from a definition; a build definition needs its context."""
    if definition.build is None:
        assert definition.image is not None  # parse_document guarantees one of image/build
        return _described(definition, None, [definition.image], None)
    if context is None:
        raise InvalidDefinition(f"the build context {definition.build.context} is not available", where="build.context")
    manifest = context.manifest
    if manifest.digest != definition.build.context:
        raise InvalidDefinition("the build context does not match its digest", where="build.context")
    dockerfile = definition.build.dockerfile
    text = context.read_text(dockerfile)
    if text is None:
        raise InvalidDefinition(f"'{dockerfile}' is not in the build context", where="build.dockerfile_path")
    bases = base_images(text, where=f"build context: {dockerfile}")
    resolved = hashing.ResolvedContext(manifest=manifest, dockerignore=context.read_text(DOCKERIGNORE))
    return _described(definition, resolved, bases, context)


def _described(
    definition: Definition,
    resolved: hashing.ResolvedContext | None,
    bases: list[str],
    context: ContextSource | None,
) -> Description:
    digest = hashing.definition_hash(definition, resolved)
    version = anonymous.anonymous_version(
        definition, None if context is None else context.manifest, None if context is None else context.open
    )
    return Description(definition=definition, hash=digest, image=hashing.image_name(digest),
                       base_images=bases, anonymous_version=version)
