"""The errors the domain and its use cases raise; the HTTP and CLI edges map them to problems."""

from __future__ import annotations


class EnvhubError(Exception):
    """Base of every error envhub reports to a user."""

    slug = "error"

    def __init__(self, detail: str, *, where: str | None = None) -> None:
        super().__init__(detail if where is None else f"{where}: {detail}")
        self.detail = detail
        self.where = where


class InvalidDefinition(EnvhubError):
    """The definition breaks a rule; `where` names the field or file."""

    slug = "invalid-definition"


class InvalidContext(EnvhubError):
    """An uploaded build context is unsafe or malformed."""

    slug = "invalid-context"


class ContextTooLarge(InvalidContext):
    """An upload exceeds the configured limits."""

    slug = "context-too-large"


class ReservedName(EnvhubError):
    """The name belongs to a curated environment or a reserved prefix."""

    slug = "reserved-name"


class NotFound(EnvhubError):
    """The named thing does not exist."""

    slug = "not-found"


class VersionConflict(EnvhubError):
    """An explicit version already holds another definition."""

    slug = "version-conflict"


class Unavailable(EnvhubError):
    """A backend could not answer (a registry, the store, the queue): the caller should retry, nothing was lost."""

    slug = "unavailable"

    def __init__(self, detail: str, *, where: str | None = None, retry_after: int = 30) -> None:
        super().__init__(detail, where=where)
        self.retry_after = retry_after


class RegistryUnavailable(Unavailable):
    """The registry could not answer (auth refused, server error, timeout): never a cache miss."""

    slug = "registry-unavailable"


class QueueUnavailable(Unavailable):
    """The build queue could not take a message; like a registry outage, the caller should retry."""

    slug = "queue-unavailable"


class StoreUnavailable(Unavailable):
    """The store or the context store could not answer (throttled, down, timed out)."""

    slug = "store-unavailable"


class NothingToBuild(EnvhubError):
    """The environment's image is the user's own; envhub does not build it."""

    slug = "nothing-to-build"


class BuildFailed(EnvhubError):
    """The build itself failed (a bad Dockerfile, a failing step): final, retrying will not help."""

    slug = "build-failed"


class BuildCancelled(EnvhubError):
    """The build was cancelled on request."""

    slug = "build-cancelled"


class BuilderUnavailable(EnvhubError):
    """The builder or the registry it pushes to could not be reached: worth retrying."""

    slug = "builder-unavailable"


class StaleRecord(EnvhubError):
    """A record changed since it was read (optimistic concurrency): another handler moved it on."""

    slug = "stale-record"


class Unauthenticated(EnvhubError):
    """The request carries no valid credential."""

    slug = "unauthenticated"


class Forbidden(EnvhubError):
    """The caller may see the workspace but lacks the role this action needs."""

    slug = "forbidden"


class MessageRefused(Exception):
    """A queue message that can never succeed, whose sender has been told: poisoned at once, never retried."""
