"""Rules for environment names and versions, as Azure ML applies them."""

from __future__ import annotations

import re

from shared.domain.errors import InvalidDefinition, ReservedName

ANONYMOUS_NAME = "CliV2AnonymousEnvironment"
NAME_MAX = 255
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Versions are free text in Azure ML, but these characters would make `name:version`,
# `name@label` and URL paths ambiguous, so they are refused.
_VERSION_FORBIDDEN = re.compile(r"[\s/\\:@#?%]|[\x00-\x1f\x7f]")
RESERVED_PREFIXES = ("AzureML-", "Microsoft")


def check_name(name: object, *, where: str = "name") -> str:
    """Return the name when Azure ML would accept it, else raise with the rule it breaks."""
    if not isinstance(name, str) or not name:
        raise InvalidDefinition("a name is required (a non-empty string)", where=where)
    if len(name) > NAME_MAX:
        raise InvalidDefinition(f"the name has {len(name)} characters; at most {NAME_MAX} are allowed", where=where)
    if not _NAME.fullmatch(name):
        raise InvalidDefinition(
            f"'{name}' is not a valid name: use letters, digits, '-', '_' and '.', starting with a letter or digit",
            where=where,
        )
    return name


def check_user_name(name: object, *, where: str = "name") -> str:
    """A name a user may register under: valid, and neither reserved nor the anonymous name."""
    checked = check_name(name, where=where)
    lowered = checked.lower()
    for prefix in RESERVED_PREFIXES:
        if lowered.startswith(prefix.lower()):
            raise ReservedName(
                f"names starting '{prefix}' (any case) are reserved for curated environments; "
                "choose a new name for your environment",
                where=where,
            )
    if lowered == ANONYMOUS_NAME.lower():
        raise ReservedName(
            f"'{ANONYMOUS_NAME}' holds anonymous environments registered by job submissions; choose another name",
            where=where,
        )
    return checked


def check_version(version: object, *, where: str = "version") -> str:
    """Return the version as a string when it is a usable explicit version."""
    if isinstance(version, bool) or not isinstance(version, str | int | float):
        raise InvalidDefinition("a version is a string or a number", where=where)
    text = str(version)
    if not text:
        raise InvalidDefinition("the version is empty; leave it out to get the next integer version", where=where)
    if text.lower() == "latest":
        raise InvalidDefinition(
            "'latest' is a label, not a version: leave the version out to get the next one", where=where
        )
    if len(text) > NAME_MAX:
        raise InvalidDefinition(f"the version has {len(text)} characters; at most {NAME_MAX}", where=where)
    if text.isascii() and text.isdigit() and len(text) > 1 and text.startswith("0"):
        raise InvalidDefinition(
            f"the version '{text}' has a leading zero; write it as '{text.lstrip('0') or '0'}' "
            "(versions are compared as written, so '01' and '1' would be two versions)", where=where)
    bad = _VERSION_FORBIDDEN.search(text)
    if bad:
        raise InvalidDefinition(f"the version '{text}' contains {bad.group()!r}, which is not allowed", where=where)
    return text
