"""An in-memory DeploymentStore with the port's semantics; one lock stands in for transactions."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from shared.domain.scans import Deployment
from shared.ports import Page


class FakeDeploymentStore:
    """Deployments by (workspace, name); the cursor is the last name of the page. Set `down` to make every call
    fail as an unreachable backend would."""

    def __init__(self) -> None:
        self.down = False
        self._lock = threading.Lock()
        self._deployments: dict[tuple[str, str], Deployment] = {}

    def _answer(self) -> None:
        if self.down:
            raise ConnectionError("FakeDeploymentStore does not answer")

    def check(self) -> None:
        self._answer()

    def put(self, deployment: Deployment) -> Deployment:
        self._answer()
        key = (deployment.workspace, deployment.name)
        with self._lock:
            existing = self._deployments.get(key)
            stored = deployment if existing is None else deployment.model_copy(
                update={"created_at": existing.created_at})
            self._deployments[key] = stored
            return stored

    def get(self, workspace: str, name: str) -> Deployment | None:
        self._answer()
        with self._lock:
            return self._deployments.get((workspace, name))

    def list_deployments(self, workspace: str, *, top: int, cursor: str | None,
                         needs_redeploy: bool | None = None) -> Page[Deployment]:
        self._answer()
        if top < 1:
            raise ValueError(f"a page holds at least one item, not {top}")
        with self._lock:
            matching = sorted((d for (ws, name), d in self._deployments.items()
                               if ws == workspace and name > (cursor or "")
                               and (needs_redeploy is None or d.needs_redeploy == needs_redeploy)),
                              key=lambda d: d.name)
        page = matching[:top]
        return Page(page, page[-1].name if len(matching) > top else None)

    def delete(self, workspace: str, name: str) -> bool:
        self._answer()
        with self._lock:
            return self._deployments.pop((workspace, name), None) is not None

    def each(self) -> Iterator[Deployment]:
        self._answer()
        with self._lock:
            every = sorted(self._deployments.values(), key=lambda d: (d.workspace, d.name))
        yield from every
