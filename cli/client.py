"""A small client of envhub's HTTP API that turns problems into readable errors."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx

SAFE_METHODS = frozenset({"GET", "HEAD"})


class ApiError(Exception):
    """The service answered with a problem."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Unreachable(Exception):
    """The service could not be reached."""


class BadResponse(Exception):
    """The service answered, but not with what an envhub service answers (not JSON, a redirect, ...)."""


class BadUrl(ValueError):
    """The service URL cannot be a URL of an envhub service."""


def service_url(url: str) -> tuple[str, bool]:
    """The URL to call and whether 'http://' was assumed; raises BadUrl for what cannot be an http(s) URL."""
    text = url.strip()
    if not text:
        raise BadUrl("--url is empty; pass the service's address, e.g. http://127.0.0.1:7071")
    assumed = "://" not in text
    if assumed:
        text = "http://" + text
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise BadUrl(f"--url {url!r} is not a URL ({error}); e.g. http://127.0.0.1:7071") from error
    if parsed.scheme not in ("http", "https"):
        raise BadUrl(f"--url {url!r}: the scheme must be http or https, e.g. http://127.0.0.1:7071")
    if not parsed.host or any(c.isspace() for c in text):
        raise BadUrl(f"--url {url!r} names no host; e.g. http://127.0.0.1:7071")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise BadUrl(f"--url {url!r}: the port must be 1 to 65535")
    if parsed.query or parsed.fragment:
        raise BadUrl(f"--url {url!r} has a query or fragment; give only scheme, host, port (and a path prefix)")
    return str(parsed.copy_with(query=None, fragment=None)).rstrip("/"), assumed


class Client:
    """Calls under {url}/api/workspaces/{workspace}."""

    def __init__(self, url: str, workspace: str, timeout: float = 60.0) -> None:
        root, self.assumed_scheme = service_url(url)
        self.base = root + "/api"
        self.workspace = workspace
        token = bearer_token(root)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            verify = verification(root)
        except (OSError, ssl.SSLError) as error:  # said on the first call, where failures become one line
            self.broken: str | None = f"cannot use the CA certificates for {root}: {error}"
            verify = True
        else:
            self.broken = None
        self.http = httpx.Client(timeout=timeout, headers=headers, verify=verify)

    def ws(self, path: str) -> str:
        """A URL inside the workspace."""
        return f"{self.base}/workspaces/{self.workspace}{path}"

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send a request; return the JSON body or raise ApiError/Unreachable/BadResponse.

        Redirects are followed for GET and HEAD only; a redirect answering another method is refused, since
        following it would resend (or drop) the body.
        """
        method = method.upper()
        if self.broken:
            raise Unreachable(self.broken)
        try:
            response = self.http.request(method, url, follow_redirects=method in SAFE_METHODS, **kwargs)
        except httpx.TransportError as error:
            assumed = " (no scheme was given, so http:// was assumed)" if self.assumed_scheme else ""
            hint = UNTRUSTED if _untrusted(error) else "is `envhub serve` running?"
            raise Unreachable(f"cannot reach envhub at {self.base}{assumed} ({error or type(error).__name__}); "
                              f"{hint}") from error
        except httpx.HTTPError as error:  # too many redirects, a decoding failure, ...
            raise BadResponse(f"envhub at {self.base}: {method} {url} failed: {error or type(error).__name__}") \
                from error
        if response.is_redirect:
            raise BadResponse(f"envhub at {self.base} answered {method} {url} with {response.status_code} "
                              f"redirecting to {response.headers.get('location', '?')}; not followed for {method}")
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = (body.get("detail") or body.get("title") if isinstance(body, dict) else None) \
                    or response.text
            except ValueError:
                detail = response.text or response.reason_phrase
            if not isinstance(detail, str):  # FastAPI's own 422s carry a list of errors
                detail = "; ".join(_describe(item) for item in detail) if isinstance(detail, list) else str(detail)
            raise ApiError(response.status_code, " ".join(detail.split()) or response.reason_phrase)
        try:
            return response.json()
        except ValueError as error:
            kind = response.headers.get("content-type", "no content type")
            raise BadResponse(f"envhub at {self.base} answered {method} {url} with {response.status_code} "
                              f"and a body that is not JSON ({kind}); is that an envhub service?") from error

    def upload_context(self, archive: bytes) -> dict[str, Any]:
        """Upload a tar.gz build context."""
        result: dict[str, Any] = self.call("POST", self.ws("/contexts"), content=archive,
                                           headers={"content-type": "application/gzip"})
        return result

    def register(self, name: str, document: dict[str, Any], version: str | None) -> dict[str, Any]:
        """Register a definition, with or without an explicit version."""
        if version is None:
            result: dict[str, Any] = self.call("POST", self.ws(f"/environments/{name}/versions"), json=document)
        else:
            result = self.call("PUT", self.ws(f"/environments/{name}/versions/{version}"), json=document)
        return result


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def bearer_token(url: str) -> str | None:
    """ENVHUB_TOKEN; else, for a service on this machine, the admin token `envhub serve` wrote into its data
    folder (ENVHUB_DATA_DIR, `.envhub` by default)."""
    token = os.environ.get("ENVHUB_TOKEN", "").strip()
    if token:
        return token
    if httpx.URL(url).host not in LOOPBACK:
        return None
    kept = Path(os.environ.get("ENVHUB_DATA_DIR", ".envhub")) / "admin-token"
    try:
        return kept.read_text().strip() or None
    except OSError:
        return None


LOCAL_CA = Path("tls", "ca.pem")  # as shared/adapters/local_tls.py keeps it (not imported: cryptography is slow)
CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")  # httpx reads these itself
UNTRUSTED = ("its certificate is not trusted: set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to the CA `envhub serve "
             "--tls` printed, or on that machine ENVHUB_DATA_DIR to its data folder")


def verification(url: str) -> ssl.SSLContext | bool:
    """How to verify the service's certificate (never not at all): the CAs the user set (SSL_CERT_FILE or
    SSL_CERT_DIR as httpx reads them, else REQUESTS_CA_BUNDLE as the Azure SDK does) or the default ones; for
    https on this machine, also the CA `envhub serve --tls` keeps in ENVHUB_DATA_DIR (`.envhub` by default)."""
    parsed = httpx.URL(url)
    local = Path(os.environ.get("ENVHUB_DATA_DIR", ".envhub")) / LOCAL_CA
    ours = parsed.scheme == "https" and parsed.host in LOOPBACK and local.is_file()
    bundle = os.environ.get("REQUESTS_CA_BUNDLE", "").strip()
    if bundle and not any(os.environ.get(name) for name in CA_VARIABLES):
        context = ssl.create_default_context(cafile=bundle)
    elif ours:
        context = httpx.create_ssl_context()  # what verify=True means
    else:
        return True
    if ours:
        # Added, not instead: machines often set SSL_CERT_FILE to the system bundle for everything.
        context.load_verify_locations(cafile=local)
    return context


def _untrusted(error: BaseException) -> bool:
    """Whether a failure came from verifying the service's certificate (httpx wraps httpcore wraps ssl)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(item: Any) -> str:
    """One validation error of FastAPI's list as `where: message`."""
    if isinstance(item, dict):
        where = ".".join(str(part) for part in item.get("loc", ()))
        return f"{where}: {item.get('msg', item)}" if where else str(item.get("msg", item))
    return str(item)
