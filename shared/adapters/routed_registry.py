"""One Registry port over two clients: the workspace's own registry through its SDK, every other registry
(public base images) through the plain distribution API."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from shared.adapters.oci_registry import allowlist, refuse_unless_allowed
from shared.domain.images import ImageRef
from shared.domain.outbound import Allowlist
from shared.ports import Registry


class RoutedRegistry:
    """Asks `home` about references to `home_host`, and `others` about the rest.

    `allowed` limits the others (None: any registry); the home registry is always allowed. A registry off the
    list, or whose name is no plain host[:port], is refused with RegistryUnavailable before `others` is asked."""

    def __init__(self, home_host: str, home: Registry, others: Registry, *,
                 allowed: Allowlist | Collection[str] | None = None) -> None:
        self.home_host = home_host
        self.home = home
        self.others = others
        self._allowed = allowlist(allowed)

    def check(self) -> None:
        """The workspace's registry answers (public registries are not envhub's to watch)."""
        self.home.check()

    def head(self, ref: ImageRef) -> str | None:
        return self._route(ref.registry, str(ref)).head(ref)

    def tags(self, registry: str, repository: str) -> list[str]:
        return self._route(registry, f"{registry}/{repository}").tags(registry, repository)

    def created(self, ref: ImageRef) -> datetime | None:
        return self._route(ref.registry, str(ref)).created(ref)

    def _route(self, registry: str, where: str) -> Registry:
        if registry == self.home_host:
            return self.home
        refuse_unless_allowed(registry, self._allowed, where)
        return self.others
