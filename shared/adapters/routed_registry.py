"""One Registry port over two clients: the workspace's own registry through its SDK, every other registry
(public base images) through the plain distribution API."""

from __future__ import annotations

from shared.domain.images import ImageRef
from shared.ports import Registry


class RoutedRegistry:
    """Asks `home` about references to `home_host`, and `others` about the rest."""

    def __init__(self, home_host: str, home: Registry, others: Registry) -> None:
        self.home_host = home_host
        self.home = home
        self.others = others

    def check(self) -> None:
        """The workspace's registry answers (public registries are not envhub's to watch)."""
        self.home.check()

    def head(self, ref: ImageRef) -> str | None:
        return (self.home if ref.registry == self.home_host else self.others).head(ref)

    def tags(self, registry: str, repository: str) -> list[str]:
        return (self.home if registry == self.home_host else self.others).tags(registry, repository)
