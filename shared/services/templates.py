"""Resolving build-time templates when a build runs: `{{latest-image-tag[:REGEX]}}` from the registry (the newest
tag naming the image `latest` names), `{{latest-pypi-version[:pre]}}` from the package index pip is configured
with. The build's stored plan keeps its templates (they are part of the definition and its hash); what the
builder gets is the plan and context with them replaced."""

from __future__ import annotations

import logging
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from shared.domain import tags
from shared.domain.context import ContextSource
from shared.domain.dockerfile import base_images
from shared.domain.errors import BuildFailed, InvalidDefinition
from shared.domain.images import ImageRef
from shared.domain.patching import base_use
from shared.domain.plans import BuildPlan
from shared.domain.tags import TEMPLATE as IMAGE_TEMPLATE
from shared.domain.templates import (
    MARKER,
    ImageSite,
    OverlayContext,
    PackageIndex,
    PackageSite,
    canonical_name,
    image_sites,
    package_sites,
    replaced,
    with_tag,
)
from shared.ports import Registry, ScanStore

log = logging.getLogger(__name__)
MAX_FILE_BYTES = 1 << 20  # larger files are data, not the Dockerfile, conda or requirements files templates live in
LOOKUPS = 8  # package versions asked at once (each is a pip process and a round trip to the index)
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")  # what may replace a template: never a newline or a quote
FROM_FLAG = "--from="  # COPY --from=<image>


@dataclass(frozen=True)
class _Where:
    path: str
    site: PackageSite


class TemplateResolver:
    """Replaces a plan's build-time templates with what they name now."""

    def __init__(self, registry: Registry, scans: ScanStore, index: PackageIndex, default_registry: str, *,
                 max_file_bytes: int = MAX_FILE_BYTES, lookups: int = LOOKUPS) -> None:
        self.registry = registry
        self.scans = scans  # immutable tags' digests, shared with the patch scan: each is asked once, ever
        self.index = index
        self.default_registry = default_registry
        self.max_file_bytes = max_file_bytes
        self.lookups = max(1, lookups)

    def resolve(self, plan: BuildPlan, context: ContextSource) -> tuple[BuildPlan, ContextSource, dict[str, str]]:
        """The plan with its Dockerfile's templates replaced, the context with every file's (the Dockerfile and any
        text file holding a template; the others pass through untouched), and what each resolved to: an image
        reference as written -> the reference built from, a package pin as written -> the pin used.

        Raises BuildFailed for a template that cannot be resolved (no matching tag, an unknown package), and lets
        RegistryUnavailable and BuilderUnavailable (the index did not answer) through for the queue to retry."""
        resolved: dict[str, str] = {}
        dockerfile = self._images(plan, resolved)
        texts = self._texts(plan, context, dockerfile)
        sites = {path: package_sites(text, where=path) for path, text in texts.items()}
        versions = self._versions(sites)
        changed: dict[str, bytes] = {}
        for path, text in texts.items():
            found = sites[path]
            new = replaced(text, ((s.start, s.end, versions[s.package, s.pre]) for s in found))
            for site in found:
                resolved.setdefault(site.written, site.pinned(versions[site.package, site.pre]))
            if path == plan.dockerfile_path:
                dockerfile = new
                if new != plan.dockerfile:
                    changed[path] = new.encode()
            elif found:
                changed[path] = new.encode()
        if not changed:
            return plan, context, resolved
        generated = tuple(g.model_copy(update={"content": changed[g.path].decode()}) if g.path in changed else g
                          for g in plan.generated)
        return (plan.model_copy(update={"dockerfile": dockerfile, "generated": generated}),
                OverlayContext(context, changed), resolved)

    # -- {{latest-image-tag}} ---------------------------------------------------------------------------------

    def _images(self, plan: BuildPlan, resolved: dict[str, str]) -> str:
        """The Dockerfile with its image templates replaced; `resolved` gets base as written -> as built from."""
        sites = image_sites(plan.dockerfile)
        if not sites:
            return plan.dockerfile
        try:
            bases = base_images(plan.dockerfile, where=plan.dockerfile_path)
        except InvalidDefinition as error:
            raise BuildFailed(error.detail, where=error.where) from error
        found: dict[tuple[str, str | None], str] = {}  # (registry/repository, REGEX) -> tag, one lookup each
        by_base: dict[str, str] = {}
        for text in bases:
            if (match := IMAGE_TEMPLATE.search(text)) is not None:
                by_base[text] = self._tag_for(text, match, found, plan.dockerfile_path)
                resolved[text] = with_tag(text, match.group(), by_base[text])
        # Bases written out in full are matched by their text; the others came through an ARG.
        through_args = {text: tag for text, tag in by_base.items() if text not in {site.token for site in sites}}
        return replaced(plan.dockerfile, ((site.start, site.end, self._site_tag(site, by_base, through_args, found,
                                                                                 resolved, plan.dockerfile_path))
                                          for site in sites))

    def _site_tag(self, site: ImageSite, by_base: dict[str, str], through_args: dict[str, str],
                  found: dict[tuple[str, str | None], str], resolved: dict[str, str], where: str) -> str:
        if site.token in by_base:  # FROM <image>:{{...}}, as base_images reads it
            return by_base[site.token]
        if site.token.startswith(FROM_FLAG) and (match := IMAGE_TEMPLATE.search(site.token)) is not None:
            image = site.token.removeprefix(FROM_FLAG)  # COPY --from=<image>:{{...}}
            tag = self._tag_for(image, match, found, where)
            resolved.setdefault(image, with_tag(image, match.group(), tag))
            return tag
        # Written through an ARG (`ARG TAG={{latest-image-tag}}` then `FROM x:${TAG}`): the base it became.
        candidates = {tag for text, tag in through_args.items() if site.template in text}
        if len(candidates) == 1:
            return candidates.pop()
        raise BuildFailed(f"line {site.line}: cannot tell which image {site.template} in '{site.token}' names; "
                          "write it as the tag of a FROM image", where=where)

    def _tag_for(self, text: str, match: re.Match[str], found: dict[tuple[str, str | None], str], where: str) -> str:
        use = base_use(text, default_registry=self.default_registry)
        if use is None or not use.template:
            raise BuildFailed(f"{match.group()} in '{text}' is not the tag of an image reference; only an image's "
                              "tag can be resolved", where=where)
        pattern = tags.template_pattern(match)
        key = (use.repository, pattern)
        if key not in found:
            found[key] = self._latest_tag(use.repository, pattern, match.group())
        return found[key]

    def _latest_tag(self, repository: str, pattern: str | None, template: str) -> str:
        """The newest tag matching `pattern` whose digest is `latest`'s: the tag list and `latest` are asked every
        time, each candidate's digest only once ever (immutable tags never move; the ScanStore remembers them)."""
        host, _, path = repository.partition("/")
        listed = self.registry.tags(host, path)
        latest = self.registry.head(ImageRef(registry=host, repository=path, tag=tags.LATEST))
        if latest is None:
            raise BuildFailed(f"{template}: {repository} has no '{tags.LATEST}' tag to resolve it against",
                              where=repository)
        memory = self._memory(repository)
        learned: dict[str, str] = {}

        def digest_of(tag: str) -> str | None:
            if tag in memory:
                return memory[tag]
            if tag not in learned and (digest := self.registry.head(ImageRef(registry=host, repository=path,
                                                                             tag=tag))) is not None:
                learned[tag] = digest
            return learned.get(tag)

        try:
            tag = tags.latest_image_tag(listed, digest_of, latest, pattern)
        except re.error as error:
            raise BuildFailed(f"{template}: '{pattern}' is not a regular expression ({error})",
                              where=repository) from error
        finally:
            self._remember(repository, learned)
        if tag is None:
            scheme = f"matching '{pattern}'" if pattern is not None else "of the dated scheme (YYYYMMDD.vN)"
            raise BuildFailed(f"{template}: no tag of {repository} {scheme} names the image its "
                              f"'{tags.LATEST}' names ({latest})", where=repository)
        log.info("%s in %s resolved to %s (%s)", template, repository, tag, latest)
        return tag

    def _memory(self, repository: str) -> dict[str, str]:
        try:
            return self.scans.known_digests(repository)
        except Exception as error:  # the memory saves round trips; without it the registry is asked instead
            log.warning("could not read the remembered digests of %s: %s", repository, error)
            return {}

    def _remember(self, repository: str, learned: dict[str, str]) -> None:
        if not learned:
            return
        try:
            self.scans.remember_digests(repository, learned)
        except Exception as error:  # as above: a digest not remembered is asked again next time, nothing worse
            log.warning("could not remember %d digests of %s: %s", len(learned), repository, error)

    # -- {{latest-pypi-version}} ------------------------------------------------------------------------------

    def _texts(self, plan: BuildPlan, context: ContextSource, dockerfile: str) -> dict[str, str]:
        """The Dockerfile, and every other small text file of the context that holds a template."""
        texts = {plan.dockerfile_path: dockerfile}
        for entry in context.manifest.files:
            if entry.path == plan.dockerfile_path or not len(MARKER) <= entry.size <= self.max_file_bytes:
                continue
            with context.open(entry.path) as handle:
                data = handle.read(self.max_file_bytes + 1)
            if MARKER not in data:
                continue
            try:
                texts[entry.path] = data.decode()
            except UnicodeDecodeError:
                continue  # not text: nothing a template could be resolved in
        return texts

    def _versions(self, sites: dict[str, list[PackageSite]]) -> dict[tuple[str, bool], str]:
        """Each (package, pre) asked once, several at a time; an unknown package fails naming where it is."""
        first: dict[tuple[str, bool], _Where] = {}
        for path, found in sites.items():
            for site in found:
                first.setdefault((canonical_name(site.package), site.pre), _Where(path, site))
        if not first:
            return {}
        pool = ThreadPoolExecutor(max_workers=min(self.lookups, len(first)), thread_name_prefix="pypi-version")
        try:
            futures: dict[tuple[str, bool], Future[str]] = {
                key: pool.submit(self.index.latest_version, where.site.package, pre=key[1])
                for key, where in first.items()}
            versions = {key: self._version(futures[key], where) for key, where in first.items()}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return {(site.package, site.pre): versions[canonical_name(site.package), site.pre]
                for found in sites.values() for site in found}

    @staticmethod
    def _version(future: Future[str], where: _Where) -> str:
        try:
            version = future.result()
        except BuildFailed as error:
            raise BuildFailed(f"line {where.site.line}: {where.site.written}: {error.detail}",
                              where=where.path) from error
        if VERSION.fullmatch(version) is None:
            raise BuildFailed(f"line {where.site.line}: {where.site.written}: the index answered '{version}', "
                              "which is no version", where=where.path)
        return version
