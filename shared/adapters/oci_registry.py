"""The Registry port over the OCI distribution API with httpx: manifest digests and tag lists."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re
import time
from collections.abc import Collection, Mapping
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.domain.errors import RegistryUnavailable
from shared.domain.images import DOCKER_HUB, ImageRef

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


class _Transient(RegistryUnavailable):
    """An outage worth retrying (5xx, 429, timeout, refused connection); still RegistryUnavailable when raised."""


class OciRegistry:
    """A distribution API client: anonymous bearer tokens (or basic credentials), retries, never an error as a miss."""

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
        page_size: int = 100,
        home: str | None = None,
    ) -> None:
        self._home = home  # the workspace's registry, the one /api/health asks about
        self._insecure = frozenset(insecure_registries)
        self._credentials = dict(credentials or {})
        self._page_size = page_size
        self._client = httpx.Client(timeout=httpx.Timeout(read_timeout, connect=connect_timeout))
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        # Defaults: three tries and 0.75 s of waiting; reraise keeps the last RegistryUnavailable. Copied per call
        # because a Retrying keeps per-call state.
        self._retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=backoff, max=max_backoff),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
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
        try:
            response = self._client.get(f"{self._base(self._home)}/v2/")
        except httpx.HTTPError as error:
            raise RegistryUnavailable(f"registry {self._home} did not answer: {error}", where=self._home) from error
        if response.status_code not in (200, 401):
            raise RegistryUnavailable(f"registry {self._home} answered {response.status_code}", where=self._home)

    def head(self, ref: ImageRef) -> str | None:
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

    def _base(self, registry: str) -> str:
        scheme = "http" if registry in self._insecure else "https"
        return f"{scheme}://{_API_HOSTS.get(registry, registry)}"

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
              headers: dict[str, str]) -> httpx.Response | None:
        """One request with authentication, retried while the failure is transient; None on 404."""
        return self._retrying.copy()(self._once, method, url, registry, scope, where, headers)

    def _once(self, method: str, url: str | httpx.URL, registry: str, scope: str, where: str,
              headers: dict[str, str]) -> httpx.Response | None:
        cached = self._tokens.get((registry, scope))
        if cached and cached[1] > time.monotonic():
            headers = {**headers, "Authorization": f"Bearer {cached[0]}"}
        response = self._send(method, url, registry, where, headers)
        if response.status_code == 401:
            authorization = self._authorize(response, registry, where)
            if authorization is not None:
                response = self._send(method, url, registry, where, {**headers, "Authorization": authorization})
        if response.status_code == 404:
            return None
        if response.is_success:
            return response
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"registry {registry} answered {response.status_code} to {method} {response.url.path}",
                             where=where, retry_after=_retry_after(response))
        raise RegistryUnavailable(
            f"registry {registry} refused {method} {response.url.path} with {response.status_code}"
            + (" (authentication or authorisation failed)" if response.status_code in (401, 403) else ""),
            where=where, retry_after=_retry_after(response))

    def _send(self, method: str, url: str | httpx.URL, registry: str, where: str,
              headers: dict[str, str]) -> httpx.Response:
        try:
            return self._client.request(method, url, headers=headers)
        except httpx.TimeoutException as exc:
            raise _Transient(f"registry {registry} timed out ({type(exc).__name__})", where=where) from exc
        except httpx.TransportError as exc:
            raise _Transient(f"registry {registry} could not be reached: {exc}", where=where) from exc

    def _authorize(self, challenged: httpx.Response, registry: str, where: str) -> str | None:
        """The Authorization header a 401 challenge asks for, or None when it asks for nothing we can give."""
        scheme, _, rest = challenged.headers.get("WWW-Authenticate", "").partition(" ")
        params = {m[1]: m[2] or m[3] for m in _CHALLENGE_PARAM.finditer(rest)}
        basic = self._credentials.get(registry)
        if scheme.lower() == "basic":
            return "Basic " + base64.b64encode(":".join(basic).encode()).decode() if basic else None
        if scheme.lower() != "bearer" or "realm" not in params:
            return None
        query = {k: params[k] for k in ("service", "scope") if params.get(k)}
        auth = httpx.BasicAuth(*basic) if basic else None
        try:
            answer = self._client.get(params["realm"], params=query, auth=auth)
        except httpx.TimeoutException as exc:
            raise _Transient(f"token service of {registry} timed out", where=where) from exc
        except httpx.TransportError as exc:
            raise _Transient(f"token service of {registry} could not be reached: {exc}", where=where) from exc
        if answer.status_code == 429 or answer.status_code >= 500:
            raise _Transient(f"token service of {registry} answered {answer.status_code}", where=where,
                             retry_after=_retry_after(answer))
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


def _json(response: httpx.Response, registry: str, where: str) -> dict[str, Any]:
    """A JSON object body; anything else is a broken answer, not data."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RegistryUnavailable(f"registry {registry} answered {response.url.path} with no JSON object", where=where)
    return body


def _retry_after(response: httpx.Response) -> int:
    """Seconds from a Retry-After header (delta or HTTP date), else the default."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return _DEFAULT_RETRY_AFTER
    return max(0, int(when.timestamp() - time.time()))
