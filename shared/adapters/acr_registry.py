"""The Registry port over the Azure SDK (azure-containerregistry) for one Azure Container Registry."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlparse

from azure.containerregistry import ContainerRegistryClient, DigestValidationError
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import DefaultAzureCredential

from shared.adapters.oci_registry import (
    choose_manifest,
    config_created,
    config_digest,
    is_index,
    schema1_created,
)
from shared.domain.errors import RegistryUnavailable
from shared.domain.images import ImageRef

log = logging.getLogger(__name__)
_MAX_NESTING = 3  # as the OCI client: an index naming an index naming a manifest at most


class AcrRegistry:
    """ContainerRegistryClient behind the port: 404 is a miss, every other failure RegistryUnavailable."""

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential | Literal["default"] | None = "default",
        *,
        connection_timeout: float = 2.0,
        read_timeout: float = 3.0,
        retry_total: int = 2,
        retry_backoff_factor: float = 0.25,
        page_size: int = 100,
    ) -> None:
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        self.registry = urlparse(endpoint).netloc
        self._page_size = page_size
        # The SDK refuses plain http unless each call opts out; only a local test registry is served over http.
        self._options: dict[str, Any] = {"enforce_https": False} if endpoint.startswith("http://") else {}
        # Retries (5xx, 429 with Retry-After, timeouts, refused connections) are the SDK's own RetryPolicy.
        self._client = ContainerRegistryClient(
            endpoint,
            DefaultAzureCredential() if credential == "default" else credential,
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
            retry_total=retry_total,
            retry_backoff_factor=retry_backoff_factor,
        )

    def close(self) -> None:
        """Close the SDK's connections."""
        self._client.close()

    def check(self) -> None:
        """The registry answers a manifest lookup with this identity; a 404 is an answer (listing is ACR-only,
        a lookup works on every registry)."""
        try:
            self._client.get_manifest("envhub/health-probe", "absent", **self._options)
        except ResourceNotFoundError:
            return
        except (AzureError, DigestValidationError) as exc:
            raise _unavailable(exc, self.registry, self.registry) from exc

    def head(self, ref: ImageRef) -> str | None:
        self._check(ref.registry)
        try:
            return str(self._client.get_manifest(ref.repository, ref.reference, **self._options).digest)
        except ResourceNotFoundError:
            return None
        except (AzureError, DigestValidationError) as exc:
            raise _unavailable(exc, self.registry, str(ref)) from exc

    def tags(self, registry: str, repository: str) -> list[str]:
        self._check(registry)
        try:
            pages = self._client.list_tag_properties(repository, results_per_page=self._page_size, **self._options)
            return [tag.name for tag in pages]
        except ResourceNotFoundError:
            return []  # an unknown repository has no tags
        except AzureError as exc:
            raise _unavailable(exc, self.registry, f"{registry}/{repository}") from exc

    def created(self, ref: ImageRef) -> datetime | None:
        """The image config's `created`: get_manifest (the linux/amd64 one of an index), then download_blob of
        its config; None on 404 or when the config has none, RegistryUnavailable when the registry fails."""
        self._check(ref.registry)
        where = str(ref)
        try:
            reference = ref.reference
            for _ in range(_MAX_NESTING):
                manifest = self._client.get_manifest(ref.repository, reference, **self._options).manifest
                if not isinstance(manifest, dict):
                    raise RegistryUnavailable(f"registry {self.registry} answered a manifest that is no JSON object",
                                              where=where)
                if not is_index(manifest):
                    break
                chosen = choose_manifest(manifest, self.registry, where)
                if chosen is None:
                    return None  # an empty index names no image
                reference = chosen
            else:
                raise RegistryUnavailable(f"registry {self.registry} nests indexes deeper than {_MAX_NESTING}",
                                          where=where)
            if manifest.get("schemaVersion") == 1:
                return schema1_created(manifest)
            digest = config_digest(manifest, self.registry, where)
            # The stream checks the blob against its digest as it ends (DigestValidationError otherwise).
            with self._client.download_blob(ref.repository, digest, **self._options) as stream:
                data = b"".join(stream)
        except ResourceNotFoundError:
            return None
        except (AzureError, DigestValidationError, ValueError) as exc:
            # ValueError: the SDK's own checks of a broken answer (no Content-Length, no Content-Range, too big).
            raise _unavailable(exc, self.registry, where) from exc
        return config_created(data, digest, self.registry, where)

    def _check(self, registry: str) -> None:
        if registry != self.registry:
            raise ValueError(f"this client serves {self.registry}, not {registry}")


def _unavailable(exc: Exception, registry: str, where: str) -> RegistryUnavailable:
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    # azure-core types the response as a protocol without headers; every transport's response has them.
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    header = str(headers.get("Retry-After", ""))
    what = f"answered {status}" if status else f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        # No answer: why (refused, reset, TLS, timeout) goes to the log only, as in the OCI client.
        log.warning("registry %s could not be reached (%s): %s: %s", registry, where, type(exc).__name__, exc)
        what = "could not be reached"
    return RegistryUnavailable(f"registry {registry} {what}", where=where,
                               retry_after=int(header) if header.isdigit() else 30)
