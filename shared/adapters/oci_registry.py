"""The Registry port over the OCI distribution API with httpx: manifest digests, tag lists and creation times.

Besides the API, the client keeps a scan fanned out over many threads polite: at most `per_registry` requests
in flight per registry, a 429's Retry-After honoured (up to a cap), registries outside an allowlist (or
whose names look like request-forgery targets) refused before any connection, and every request counted."""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from shared.adapters.guarded_network import RefusedAddress, guarded_client
from shared.domain.errors import RegistryUnavailable
from shared.domain.images import DOCKER_HUB, ImageRef
from shared.domain.outbound import ALLOWLIST_SETTING, Allowlist, address_problem, host_problem

log = logging.getLogger(__name__)

# Every manifest kind a registry may hold under a tag; a registry answers 404 for a kind not accepted.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
))
_API_HOSTS = {DOCKER_HUB: "registry-1.docker.io"}
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')
_DEFAULT_RETRY_AFTER = 30
_TOKEN_LIFETIME = 60  # seconds, what the token spec says when a realm omits expires_in
_MAX_REDIRECTS = 5  # a blob GET may be sent on to storage (a CDN); never further than this
_MAX_NESTING = 3  # an index naming an index naming a manifest is as deep as a real registry goes


class _Transient(RegistryUnavailable):
    """An outage worth retrying (5xx, 429, timeout, refused connection); still RegistryUnavailable when raised.

    `asked` is the wait the registry asked for in a Retry-After header (None when it sent none)."""

    def __init__(self, detail: str, *, where: str | None = None, asked: int | None = None) -> None:
        super().__init__(detail, where=where, retry_after=_DEFAULT_RETRY_AFTER if asked is None else asked)
        self.asked = asked


def _asked(retry_state: RetryCallState) -> int | None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None and outcome.failed else None
    return error.asked if isinstance(error, _Transient) else None


class wait_retry_after(wait_base):
    """Wait what the registry asked for (Retry-After) when it asked for longer than `fallback` would wait."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        asked = _asked(retry_state)
        return max(float(asked or 0), self.fallback(retry_state))


class stop_when_asked_to_wait_longer(stop_base):
    """Give up at once when the registry asks for a longer wait than `cap` seconds (the caller reports it)."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> bool:
        asked = _asked(retry_state)
        return asked is not None and asked > self.cap


class OciRegistry:
    """A distribution API client: anonymous bearer tokens (or basic credentials), retries, never an error as a miss.

    Thread-safe: one client serves a scan's every thread. `requests` counts the HTTP requests sent, by
    f"{method} {registry}" (token and redirected requests are counted under the registry they serve)."""

    def __init__(
        self,
        *,
        insecure_registries: Collection[str] = (),
        credentials: Mapping[str, tuple[str, str]] | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        attempts: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 2.0,
        page_size: int = 1000,  # tag lists: most repositories fit in one page (registries may send fewer)
        home: str | None = None,
        per_registry: int = 4,
        max_retry_after: float = 30.0,
        allowed: Allowlist | Collection[str] | None = None,
        exempt: Collection[str] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_registry < 1:
            raise ValueError("per_registry must be at least 1")
        self._home = home  # the workspace's registry, the one /api/health asks about
        self._insecure = frozenset(insecure_registries)
        self._credentials = dict(credentials or {})
        self._page_size = page_size
        # The home registry is the workspace's own: always allowed when a list is given.
        self._allowed = allowlist(allowed, also=home)
        self._max_retry_after = max_retry_after
        # Every connection is to a checked public address, except to the hosts named here: the home registry
        # (an ACR behind a private endpoint resolves privately), IP literals on the list, plain-http local ones.
        exempt = {*exempt, *self._insecure, *([home] if home else []),
                  *(self._allowed.exempt if self._allowed else ())}
        self._client = guarded_client(exempt, timeout=httpx.Timeout(read_timeout, connect=connect_timeout))
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._per_registry = per_registry
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        # Defaults: three tries and 0.75 s of waiting, longer when a registry asks for it with Retry-After (up to
        # max_retry_after; asked for more, the call gives up at once); reraise keeps the last RegistryUnavailable.
        # Copied per call because a Retrying keeps per-call state.
        self._retrying = Retrying(
            stop=stop_after_attempt(attempts) | stop_when_asked_to_wait_longer(max_retry_after),
            wait=wait_retry_after(wait_exponential(multiplier=backoff, max=max_backoff)),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
            sleep=sleep,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> OciRegistry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check(self) -> None:
        """The home registry answers its API root (200, or 401 asking for a token: it is up)."""
        if self._home is None:
            return
        refuse_unless_allowed(self._home, self._allowed, self._home)
        try:
            with self._slot("GET", self._home):
                response = self._client.get(f"{self._base(self._home)}/v2/")
        except (httpx.HTTPError, RefusedAddress) as error:
            raise _unreachable(self._home, self._home, error, transient=False) from error
        if response.status_code not in (200, 401):
            raise RegistryUnavailable(f"registry {self._home} answered {response.status_code}", where=self._home)

    def head(self, ref: ImageRef) -> str | None:
        refuse_unless_allowed(ref.registry, self._allowed, str(ref))
        url = f"{self._base(ref.registry)}/v2/{ref.repository}/manifests/{ref.reference}"
        headers = {"Accept": MANIFEST_TYPES}
        scope = f"repository:{ref.repository}:pull"
        response = self._call("HEAD", url, ref.registry, scope, str(ref), headers)
        if response is None:
            return None
        digest: str | None = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        # Some registries leave the header off a HEAD; the digest is then the hash of the manifest bytes.
        response = self._call("GET", url, ref.registry, scope, str(ref), headers)
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        return digest or "sha256:" + hashlib.sha256(response.content).hexdigest()

    def tags(self, registry: str, repository: str) -> list[str]:
        where = f"{registry}/{repository}"
        refuse_unless_allowed(registry, self._allowed, where)
        scope = f"repository:{repository}:pull"
        url: httpx.URL | None = httpx.URL(f"{self._base(registry)}/v2/{repository}/tags/list",
                                          params={"n": self._page_size})
        found: list[str] = []
        seen: set[httpx.URL] = set()
        while url is not None and url not in seen:
            seen.add(url)
            response = self._call("GET", url, registry, scope, where, {"Accept": "application/json"})
            if response is None and len(seen) == 1:
                return []  # an unknown repository has no tags
            if response is None:
                raise RegistryUnavailable(f"registry {registry} lost a page of the tag list: {url}", where=where)
            found.extend(_json(response, registry, where).get("tags") or [])
            url = self._next_page(response, where)
        return found

    def created(self, ref: ImageRef) -> datetime | None:
        """The image config's `created`: manifest (the linux/amd64 one of an index), then its config blob."""
        where = str(ref)
        refuse_unless_allowed(ref.registry, self._allowed, where)
        base = f"{self._base(ref.registry)}/v2/{ref.repository}"
        scope = f"repository:{ref.repository}:pull"
        reference = ref.reference
        for _ in range(_MAX_NESTING):
            response = self._call("GET", f"{base}/manifests/{reference}", ref.registry, scope, where,
                                  {"Accept": MANIFEST_TYPES})
            if response is None:
                return None
            manifest = _json(response, ref.registry, where)
            if not is_index(manifest):
                break
            chosen = choose_manifest(manifest, ref.registry, where)
            if chosen is None:
                return None  # an empty index names no image
            reference = chosen
        else:
            raise RegistryUnavailable(f"registry {ref.registry} nests indexes deeper than {_MAX_NESTING}",
                                      where=where)
        if manifest.get("schemaVersion") == 1:
            return schema1_created(manifest)
        digest = config_digest(manifest, ref.registry, where)
        response = self._call("GET", f"{base}/blobs/{digest}", ref.registry, scope, where, {}, follow=True)
        if response is None:
            return None
        return config_created(response.content, digest, ref.registry, where)

    def _base(self, registry: str) -> str:
        scheme = "http" if registry in self._insecure else "https"
        return f"{scheme}://{_API_HOSTS.get(registry, registry)}"

    @contextmanager
    def _slot(self, method: str, registry: str) -> Iterator[None]:
        """Hold one of the registry's `per_registry` request slots (never across a retry's wait), and count."""
        key = registry.lower()
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = threading.BoundedSemaphore(self._per_registry)
            self.requests[f"{method} {key}"] += 1
        with slot:
            yield

    def _next_page(self, response: httpx.Response, where: str) -> httpx.URL | None:
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        url = response.url.join(link)  # RFC 5988 allows a relative reference
        if url.host != response.url.host or url.port != response.url.port:
            # A token for this registry must not travel to another host.
            raise RegistryUnavailable(f"the next page of tags points off the registry: {url}", where=where)
        return url

    def _call(self, method: str, url: str | httpx.URL, registry: str, scope: str, where: str,
              headers: dict[str, str], *, follow: bool = False) -> httpx.Response | None:
        """One request with authentication, retried while the failure is transient; None on 404."""
        return self._retrying.copy()(self._once, method, url, registry, scope, where, headers, follow)

    def _once(self, method: str, url: str | httpx.URL, registry: str, scope: str, where: str,
              headers: dict[str, str], follow: bool) -> httpx.Response | None:
        cached = self._tokens.get((registry, scope))
        if cached and cached[1] > time.monotonic():
            headers = {**headers, "Authorization": f"Bearer {cached[0]}"}
        response = self._send(method, url, registry, where, headers)
        if response.status_code == 401:
            authorization = self._authorize(response, registry, where)
            if authorization is not None:
                headers = {**headers, "Authorization": authorization}
                response = self._send(method, url, registry, where, headers)
        if follow:
            response = self._follow(response, registry, where, headers)
        if response.status_code == 404:
            return None
        if response.is_success:
            return response
        asked = _retry_after(response)
        if response.status_code == 429 or response.status_code >= 500:
            detail = f"registry {registry} answered {response.status_code} to {method} {response.url.path}"
            if asked is not None and asked > self._max_retry_after:
                detail += f", asking to wait {asked} s (more than the {self._max_retry_after:g} s this client waits)"
            raise _Transient(detail, where=where, asked=asked)
        raise RegistryUnavailable(
            f"registry {registry} refused {method} {response.url.path} with {response.status_code}"
            + (" (authentication or authorisation failed)" if response.status_code in (401, 403) else ""),
            where=where, retry_after=_DEFAULT_RETRY_AFTER if asked is None else asked)

    def _follow(self, response: httpx.Response, registry: str, where: str,
                headers: dict[str, str]) -> httpx.Response:
        """Follow a blob's redirects (registries send blobs on to storage): the credentials stay with the
        registry, plain http only from a plain-http registry, and never to a host that fails the address rules
        (the allowlist names registries, not the storage hosts they send blobs to)."""
        for _ in range(_MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            target = response.url.join(response.headers["Location"])
            problem = _url_problem(target, plain_http=response.url.scheme == "http")
            if problem:
                raise RegistryUnavailable(f"registry {registry} redirected to a refused address: {problem}",
                                          where=where)
            same_origin = (target.scheme, target.host, target.port) == (
                response.url.scheme, response.url.host, response.url.port)
            onward = headers if same_origin else {k: v for k, v in headers.items() if k.lower() != "authorization"}
            response = self._send("GET", target, registry, where, onward)
        if response.is_redirect:
            raise RegistryUnavailable(f"registry {registry} redirected more than {_MAX_REDIRECTS} times", where=where)
        return response

    def _send(self, method: str, url: str | httpx.URL, registry: str, where: str,
              headers: dict[str, str]) -> httpx.Response:
        try:
            with self._slot(method, registry):
                return self._client.request(method, url, headers=headers)
        except RefusedAddress as exc:  # the address check: final, and said no differently from an outage
            raise _unreachable(registry, where, exc, transient=False) from exc
        except httpx.TransportError as exc:
            raise _unreachable(registry, where, exc, transient=True) from exc

    def _authorize(self, challenged: httpx.Response, registry: str, where: str) -> str | None:
        """The Authorization header a 401 challenge asks for, or None when it asks for nothing we can give."""
        scheme, _, rest = challenged.headers.get("WWW-Authenticate", "").partition(" ")
        params = {m[1]: m[2] or m[3] for m in _CHALLENGE_PARAM.finditer(rest)}
        basic = self._credentials.get(registry)
        if scheme.lower() == "basic":
            return "Basic " + base64.b64encode(":".join(basic).encode()).decode() if basic else None
        if scheme.lower() != "bearer" or "realm" not in params:
            return None
        # The realm is the registry's to name, but not any address: the same rules as a registry's own.
        problem = _url_problem(httpx.URL(params["realm"]), plain_http=registry in self._insecure)
        if problem:
            raise RegistryUnavailable(f"registry {registry} names a refused token service: {problem}", where=where)
        query = {k: params[k] for k in ("service", "scope") if params.get(k)}
        auth = httpx.BasicAuth(*basic) if basic else None
        try:
            with self._slot("GET", registry):
                answer = self._client.get(params["realm"], params=query, auth=auth)
        except RefusedAddress as exc:
            raise _unreachable(registry, where, exc, transient=False) from exc
        except httpx.TransportError as exc:
            raise _unreachable(registry, where, exc, transient=True) from exc
        if answer.status_code == 429 or answer.status_code >= 500:
            raise _Transient(f"token service of {registry} answered {answer.status_code}", where=where,
                             asked=_retry_after(answer))
        if not answer.is_success:
            raise RegistryUnavailable(f"token service of {registry} refused a token with {answer.status_code}",
                                      where=where)
        body = _json(answer, registry, where)
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryUnavailable(f"token service of {registry} answered without a token", where=where)
        lifetime = float(body.get("expires_in") or _TOKEN_LIFETIME)
        # Renew a little early so a token never expires between the check and the request.
        self._tokens[(registry, params.get("scope", ""))] = (token, time.monotonic() + lifetime * 0.9)
        return f"Bearer {token}"


# --- which registries may be contacted (the rules are the domain's: shared/domain/outbound.py) ----------------


def allowlist(allowed: Allowlist | Collection[str] | None, *, also: str | None = None) -> Allowlist | None:
    """The list a client applies, `also` (its home registry) always on it; a plain collection of host[:port]
    entries is read as the setting is. None: no list (any registry whose name passes host_problem)."""
    if allowed is None:
        return None
    if not isinstance(allowed, Allowlist):
        allowed = Allowlist.parse(",".join(allowed))
    return dataclasses.replace(allowed, home=allowed.home | {also.lower()}) if also else allowed


def refuse_unless_allowed(registry: str, allowed: Allowlist | None, where: str) -> None:
    """Raise RegistryUnavailable, before any connection, for a registry off the allowlist or one whose name is
    no plain DNS name or IP address with an optional port (user:password@, paths, odd numeric forms, and the
    link-local, unspecified and multicast addresses that reach cloud metadata services rather than registries)."""
    problem = host_problem(registry)
    if problem:
        shown = _redacted(registry)
        raise RegistryUnavailable(f"registry {shown} is refused before any connection: {problem}",
                                  where=where.replace(registry, shown))
    refusal = None if allowed is None else allowed.refusal(registry)
    if refusal is not None:
        raise RegistryUnavailable(refusal if ALLOWLIST_SETTING in refusal else f"{refusal} ({ALLOWLIST_SETTING})",
                                  where=where)


def _unreachable(registry: str, where: str, error: Exception, *, transient: bool) -> RegistryUnavailable:
    """One message for every way a connection fails (refused, reset, TLS, timeout, an address refused by the
    check): the caller learns nothing about the network behind envhub; the log keeps the detail."""
    log.warning("registry %s could not be reached (%s): %s: %s", registry, where, type(error).__name__, error)
    detail = f"registry {registry} could not be reached"
    return _Transient(detail, where=where) if transient else RegistryUnavailable(detail, where=where)


def _url_problem(url: httpx.URL, *, plain_http: bool) -> str | None:
    """Why a URL a registry sent us to (a redirect, a token realm) must not be followed, or None; its address is
    checked again when connecting."""
    if url.scheme != "https" and not (plain_http and url.scheme == "http"):
        return f"{url.scheme}:// is not allowed here"
    if url.userinfo:
        return "it carries user information (user:password@)"
    return address_problem(url.host.lower())


def _redacted(registry: str) -> str:
    """A registry name fit for a message: user information replaced."""
    return "***@" + registry.rpartition("@")[2] if "@" in registry else registry


# --- reading manifests and configs ---------------------------------------------------------------------------

_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_index(manifest: Mapping[str, Any]) -> bool:
    """An OCI image index or a Docker manifest list (both list `manifests`)."""
    return isinstance(manifest.get("manifests"), list)


def choose_manifest(index: Mapping[str, Any], registry: str, where: str) -> str | None:
    """The digest of an index's linux/amd64 entry, else its first image entry (attestations, which buildx
    lists as unknown/unknown, come last), else None for an index without entries."""
    entries = [entry for entry in index.get("manifests") or [] if isinstance(entry, dict)]

    def platform(entry: dict[str, Any]) -> tuple[str, str]:
        described = entry.get("platform")
        if not isinstance(described, dict):
            return "", ""
        return str(described.get("os", "")), str(described.get("architecture", ""))

    ranked = sorted(entries, key=lambda e: (platform(e) != ("linux", "amd64"), platform(e) == ("unknown", "unknown")))
    if not ranked:
        return None
    return _valid_digest(ranked[0].get("digest"), registry, where)


def config_digest(manifest: Mapping[str, Any], registry: str, where: str) -> str:
    """The digest of an image manifest's config blob."""
    config = manifest.get("config")
    if not isinstance(config, dict):
        raise RegistryUnavailable(f"registry {registry} answered a manifest without a config", where=where)
    return _valid_digest(config.get("digest"), registry, where)


def config_created(data: bytes, digest: str, registry: str, where: str) -> datetime | None:
    """`created` of an image config blob (checked against its digest); None when it has none."""
    algorithm, _, expected = digest.partition(":")
    if algorithm == "sha256" and hashlib.sha256(data).hexdigest() != expected:
        raise RegistryUnavailable(f"registry {registry} answered a config blob that does not match {digest}",
                                  where=where)
    try:
        config = json.loads(data)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise RegistryUnavailable(f"registry {registry} answered a config blob that is no JSON object", where=where)
    return parse_created(config.get("created"))


def schema1_created(manifest: Mapping[str, Any]) -> datetime | None:
    """`created` of a Docker schema 1 manifest: its newest history entry's."""
    history = manifest.get("history")
    if not isinstance(history, list) or not history or not isinstance(history[0], dict):
        return None
    try:
        newest = json.loads(history[0].get("v1Compatibility") or "")
    except (TypeError, ValueError):
        return None
    return parse_created(newest.get("created")) if isinstance(newest, dict) else None


def parse_created(value: object) -> datetime | None:
    """An RFC 3339 time (Go's nanoseconds cut to microseconds) in UTC; None for anything else, and for the
    placeholders reproducible builds write instead of a time (Go's zero time, the Unix epoch)."""
    found = _RFC3339.match(value) if isinstance(value, str) else None
    if not found:
        return None
    year, month, day, hour, minute, second = (int(found[i]) for i in range(1, 7))
    micro = int((found[7] or "")[:6].ljust(6, "0"))
    offset = timedelta()
    if found[9]:
        offset = (1 if found[9] == "+" else -1) * timedelta(hours=int(found[10]), minutes=int(found[11]))
    try:
        when = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return when if when > _EPOCH else None


def _valid_digest(value: object, registry: str, where: str) -> str:
    if not isinstance(value, str) or not _DIGEST.match(value):
        raise RegistryUnavailable(f"registry {registry} answered a manifest naming no valid digest: {value!r}",
                                  where=where)
    return value


def _json(response: httpx.Response, registry: str, where: str) -> dict[str, Any]:
    """A JSON object body; anything else is a broken answer, not data."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RegistryUnavailable(f"registry {registry} answered {response.url.path} with no JSON object", where=where)
    return body


def _retry_after(response: httpx.Response) -> int | None:
    """Seconds from a Retry-After header (delta or HTTP date); None without a usable one."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, round(when.timestamp() - time.time()))
