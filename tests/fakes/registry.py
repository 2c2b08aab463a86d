"""An in-memory Registry with the port's semantics: tags, digests and creation times from dicts.

    registry = FakeRegistry()
    registry.push("mcr.microsoft.com/azureml/base:20240101", created=datetime(2024, 1, 1, tzinfo=UTC))
    registry.down.add("mcr.microsoft.com/azureml/base")   # now every call about it is an outage

Keys are plain strings: a repository is "registry/repository", a reference "registry/repository:tag" (or
"@digest"), as str(ImageRef) spells them. `calls` counts the port's calls by method and `log` keeps them."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from datetime import datetime

from shared.domain.errors import RegistryUnavailable
from shared.domain.images import ImageRef, parse_image


class FakeRegistry:
    """The Registry port from dicts. Thread-safe, so a fanned-out scan can share one."""

    def __init__(self, home: str = "registry.test") -> None:
        self.home = home
        self.tag_lists: dict[str, list[str]] = {}  # "registry/repository" -> its tags, in push order
        self.digests: dict[str, str] = {}  # "registry/repository:tag" -> the manifest digest it names
        self.manifests: dict[str, set[str]] = {}  # "registry/repository" -> every digest it holds, tagged or not
        self.created_at: dict[str, datetime | None] = {}  # digest -> its config's `created` (None: has none)
        self.down: set[str] = set()  # "registry/repository", or a whole "registry": calls raise RegistryUnavailable
        self.home_down = False  # check() fails
        self.calls: Counter[str] = Counter()  # "head", "tags", "created", "check"
        self.log: list[tuple[str, str]] = []  # (method, what it was asked about)
        self._lock = threading.Lock()

    # --- arranging -------------------------------------------------------------------------------------------

    def push(self, ref: ImageRef | str, digest: str | None = None, *, created: datetime | None = None) -> str:
        """Point a tag at a digest (by default one derived from the reference) made at `created`; return it.
        Tagging a digest already held keeps its time unless `created` is given."""
        ref = _ref(ref)
        if ref.tag is None:
            raise ValueError(f"push needs a tag: {ref}")
        digest = digest or "sha256:" + hashlib.sha256(str(ref).encode()).hexdigest()
        with self._lock:
            tags = self.tag_lists.setdefault(_repo(ref.registry, ref.repository), [])
            if ref.tag not in tags:
                tags.append(ref.tag)
            self.digests[str(ref)] = digest
            self.manifests.setdefault(_repo(ref.registry, ref.repository), set()).add(digest)
            if created is not None or digest not in self.created_at:
                self.created_at[digest] = created
        return digest

    def untag(self, ref: ImageRef | str) -> None:
        """Remove a tag; its image stays reachable by digest (as in a registry until garbage collection)."""
        ref = _ref(ref)
        with self._lock:
            tags = self.tag_lists.get(_repo(ref.registry, ref.repository), [])
            if ref.tag in tags:
                tags.remove(ref.tag)
            self.digests.pop(str(ref), None)

    def delete(self, ref: ImageRef | str) -> None:
        """Delete the manifest a tag or digest names, and with it every tag naming it (as a registry does)."""
        ref = _ref(ref)
        digest = ref.digest or self.digests.get(str(ref))
        repository = _repo(ref.registry, ref.repository)
        with self._lock:
            self.manifests.get(repository, set()).discard(digest or "")
            for key in [k for k, v in self.digests.items() if v == digest and k.startswith(repository + ":")]:
                del self.digests[key]
                tags = self.tag_lists.get(repository, [])
                tags.remove(key[len(repository) + 1:])

    # --- the port --------------------------------------------------------------------------------------------

    def check(self) -> None:
        self._called("check", self.home)
        if self.home_down:
            raise RegistryUnavailable(f"registry {self.home} does not answer (fake)", where=self.home)

    def head(self, ref: ImageRef) -> str | None:
        self._called("head", str(ref))
        self._answer(ref.registry, ref.repository, str(ref))
        return self._digest(ref)

    def tags(self, registry: str, repository: str) -> list[str]:
        where = _repo(registry, repository)
        self._called("tags", where)
        self._answer(registry, repository, where)
        with self._lock:
            return list(self.tag_lists.get(where, []))

    def created(self, ref: ImageRef) -> datetime | None:
        self._called("created", str(ref))
        self._answer(ref.registry, ref.repository, str(ref))
        digest = self._digest(ref)
        with self._lock:
            return None if digest is None else self.created_at.get(digest)

    # --- inside ----------------------------------------------------------------------------------------------

    def _called(self, method: str, what: str) -> None:
        with self._lock:
            self.calls[method] += 1
            self.log.append((method, what))

    def _answer(self, registry: str, repository: str, where: str) -> None:
        if registry in self.down or _repo(registry, repository) in self.down:
            raise RegistryUnavailable(f"registry {registry} does not answer (fake)", where=where)

    def _digest(self, ref: ImageRef) -> str | None:
        with self._lock:
            if ref.digest is None:
                return self.digests.get(str(ref.with_tag(ref.tag or "latest")))
            held = ref.digest in self.manifests.get(_repo(ref.registry, ref.repository), set())
            return ref.digest if held else None


def _repo(registry: str, repository: str) -> str:
    return f"{registry}/{repository}"


def _ref(ref: ImageRef | str) -> ImageRef:
    return ref if isinstance(ref, ImageRef) else parse_image(ref)
