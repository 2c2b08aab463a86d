"""The connection-time address check: a name is resolved once, every address checked, the checked one connected
to, and TLS still speaks to (and verifies) the name."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import pytest

from shared.adapters import guarded_network
from shared.adapters.guarded_network import GuardedBackend, RefusedAddress


class Handshake(Exception):
    """Raised where the TLS handshake would begin: far enough to see what it was asked."""


class Stream(httpcore.NetworkStream):
    def __init__(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        self.seen["server_hostname"] = server_hostname
        raise Handshake

    def close(self) -> None:
        pass


class Recording(httpcore.NetworkBackend):
    """Stands in for the socket layer: records where it was asked to connect."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        self.seen["connected"] = (host, port)
        return Stream(self.seen)


def rebinding(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """A resolver that answers differently each time it is asked (the rebinding attack); returns what was asked."""
    asked: list[str] = []
    pending = list(answers)

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return pending.pop(0)

    monkeypatch.setattr(guarded_network, "resolve", resolve)
    return asked


def test_the_checked_address_is_the_one_connected_and_tls_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = rebinding(monkeypatch, ["8.8.8.8"], ["127.0.0.1"])
    inner = Recording()
    with httpcore.ConnectionPool(network_backend=GuardedBackend(inner=inner)) as pool, pytest.raises(Handshake):
        pool.request("GET", "https://registry.example:443/v2/")
    assert asked == ["registry.example"]  # resolved once: the second (rebound) answer is never asked for
    assert inner.seen == {"connected": ("8.8.8.8", 443), "server_hostname": "registry.example"}


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["8.8.8.8", "10.0.0.5"], ["169.254.169.254"], ["::1"],
                                       ["fe80::1%eth0"], ["::ffff:127.0.0.1"], ["100.64.0.1"], ["224.0.0.1"], []])
def test_a_name_with_any_address_off_the_internet_is_refused(addresses: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rebinding(monkeypatch, addresses)
    inner = Recording()
    with pytest.raises(RefusedAddress):
        GuardedBackend(inner=inner).connect_tcp("registry.example", 443)
    assert inner.seen == {}


def test_ip_literals_are_checked_and_exempt_hosts_pass_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = rebinding(monkeypatch)
    inner = Recording()
    backend = GuardedBackend(["127.0.0.1:5000", "acr.internal.example"], inner=inner)
    with pytest.raises(RefusedAddress):
        backend.connect_tcp("127.0.0.1", 5001)  # the exempt address on another port
    backend.connect_tcp("127.0.0.1", 5000)
    assert inner.seen["connected"] == ("127.0.0.1", 5000)
    backend.connect_tcp("acr.internal.example", 443)  # a private endpoint's name: resolved by the socket layer
    assert inner.seen["connected"] == ("acr.internal.example", 443) and asked == []
    with pytest.raises(RefusedAddress):
        backend.connect_unix_socket("registry.sock")
