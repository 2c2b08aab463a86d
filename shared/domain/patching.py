"""What a scan concludes about one base image of one environment version, from the facts it gathered (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain import tags
from shared.domain.errors import InvalidDefinition
from shared.domain.images import parse_image
from shared.domain.scans import OVERDUE_DAYS, FindingType, RefFacts

PLACEHOLDER = "envhub-template"  # stands in for a template while the rest of the reference is parsed


@dataclass(frozen=True)
class BaseUse:
    """A base image as an environment names it: its repository and the reference within it."""

    text: str  # as written in the definition or Dockerfile
    repository: str  # registry/repository
    reference: str  # a tag, "" for none, or a `{{latest-image-tag[:REGEX]}}` template

    @property
    def template(self) -> bool:
        """Resolved at build time to the newest tag sharing `latest`'s digest."""
        return self.reference.startswith("{{")

    @property
    def mutable(self) -> bool:
        """Whether what it names can move: no tag, `latest`, a floating tag, a template."""
        return self.template or tags.is_mutable(self.reference or None)


@dataclass(frozen=True)
class Conclusion:
    """One finding a scan makes (the record around it is the service's business)."""

    type: FindingType
    current: str | None
    available: str | None = None
    available_created: datetime | None = None
    overdue: bool = False
    detail: str | None = None


def base_use(text: str, *, default_registry: str) -> BaseUse | None:
    """Where a base reference points; None for a digest-pinned one (it never moves and names no line) or one
    that is not a concrete reference."""
    match = tags.TEMPLATE.search(text)
    concrete = text if match is None else text[:match.start()] + PLACEHOLDER + text[match.end():]
    try:
        ref = parse_image(concrete, default_registry=default_registry)
    except InvalidDefinition:
        return None
    if ref.digest is not None:
        return None
    reference = ref.tag or ""
    if match is not None:
        if reference != PLACEHOLDER:
            return None  # a template anywhere but the tag is not one envhub resolves
        reference = match.group()
    return BaseUse(text=text, repository=f"{ref.registry}/{ref.repository}", reference=reference)


def conclude(use: BaseUse, facts: RefFacts | None, used_digest: str | None, now: datetime) -> Conclusion | None:
    """The finding for one use, or None when there is nothing to say. `used_digest` is the base digest the
    environment's last build recorded (None when it was never built)."""
    if facts is None:
        return None  # the registry failed for this repository: reported on the scan, never a finding
    if not facts.exists:
        what = f"tag '{use.reference}'" if use.reference and not use.template else "repository"
        return Conclusion(FindingType.BASE_MISSING, current=use.reference or None,
                          detail=f"the {what} of {use.text} no longer exists")
    if use.mutable:
        if used_digest is None or facts.digest is None or facts.digest == used_digest:
            return None
        moved = f"{use.text} now names {facts.digest}"
        if facts.resolved_tag:
            moved += f" ({facts.resolved_tag})"
        return Conclusion(FindingType.BASE_MOVED, current=used_digest, available=facts.digest,
                          detail=f"{moved}; the last build used {used_digest}")
    if facts.newer_tag is None:
        return None
    released = facts.newer_created
    overdue = released is not None and now - released > timedelta(days=OVERDUE_DAYS)
    return Conclusion(FindingType.PATCH_AVAILABLE, current=use.reference, available=facts.newer_tag,
                      available_created=released, overdue=overdue,
                      detail=f"{use.repository}:{facts.newer_tag} is newer than {use.reference}")
