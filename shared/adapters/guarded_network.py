"""Connections only to checked addresses: an httpcore network backend that resolves a name once, refuses it unless
every address is public (or the host is exempt), and connects to the address it checked, so that a name which
resolves differently a moment later (DNS rebinding) cannot reach loopback, a private network or a metadata service.
TLS still verifies the certificate against the name: httpcore passes the URL's host as SNI to start_tls."""

from __future__ import annotations

import logging
import socket
from collections.abc import Collection, Iterable

import httpcore
import httpx

from shared.domain.outbound import host_problem, ip_literal, non_public, split_host

log = logging.getLogger(__name__)


class RefusedAddress(Exception):
    """A host was not connected to: it resolves to (or is) an address off the public internet, or it is not a
    TCP host. Not an httpcore error, so no retry and no httpx mapping catches it; the caller reports it."""


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for TCP, in the resolver's order (tests replace this to play DNS)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class GuardedBackend(httpcore.NetworkBackend):
    """Wraps a backend (the default synchronous one): `exempt` hosts (host[:port]; without a port, any port) are
    connected as asked, every other host only at public addresses, the checked one itself."""

    def __init__(self, exempt: Iterable[str] = (), inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()
        self._exempt = {split_host(entry) for entry in exempt if not host_problem(entry)}

    def exempts(self, host: str, port: int) -> bool:
        """Whether (host, port) is contacted whatever its address."""
        key = host.lower().strip("[]")
        return (key, port) in self._exempt or (key, None) in self._exempt

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        if self.exempts(host, port):
            return self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        literal = ip_literal(host.strip("[]"))
        try:
            addresses = [host.strip("[]")] if literal is not None else resolve(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"{host} did not resolve: {error}") from error
        refused = [problem for address in addresses if (problem := _problem(address)) is not None]
        if refused or not addresses:
            raise RefusedAddress(f"{host}:{port} is not connected to: {'; '.join(refused) or 'no address'}")
        failure: Exception | None = None
        for address in addresses:  # each one checked above; the first that answers is used
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        raise RefusedAddress("registries are reached over TCP only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _problem(address: str) -> str | None:
    parsed = ip_literal(address.split("%", 1)[0])  # an IPv6 scope (%eth0) is no part of the address
    return f"{address} is no IP address" if parsed is None else non_public(parsed)


def guarded_client(exempt: Collection[str], *, timeout: httpx.Timeout) -> httpx.Client:
    """An httpx client whose every connection (redirects and token services too) goes through GuardedBackend.

    httpx's transport takes no network backend, so its connection pool is replaced by one that does; proxies from
    the environment are not used (a proxy would resolve the names itself, past the check)."""
    transport = httpx.HTTPTransport()
    # A private attribute, but the only way in: HTTPTransport builds this very pool, minus the backend.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), max_connections=100, max_keepalive_connections=20,
        keepalive_expiry=5.0, network_backend=GuardedBackend(exempt))
    return httpx.Client(transport=transport, timeout=timeout, trust_env=False)
