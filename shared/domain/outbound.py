"""Which registries envhub and its builds may contact (ENVHUB_ALLOWED_REGISTRIES), and the checks that apply it."""

from __future__ import annotations

import io
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from dockerfile_parse import DockerfileParser

from shared.domain.dockerfile import base_images
from shared.domain.errors import InvalidDefinition
from shared.domain.images import DOCKER_HUB

ALLOWLIST_SETTING = "ENVHUB_ALLOWED_REGISTRIES"
ANY = "*"  # the explicit opt-out: any registry at a public address
DEFAULT_REGISTRIES = ("mcr.microsoft.com", "docker.io", "nvcr.io", "ghcr.io")
# containers/image transports a FROM may name instead of a registry; each reads this machine, not a registry.
TRANSPORTS = frozenset({"containers-storage", "dir", "docker-archive", "docker-daemon", "oci", "oci-archive",
                        "ostree", "sif", "tarball"})

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_MOUNT_FROM = re.compile(r"(?:^|,)from=([^,\s]+)")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedRegistry(InvalidDefinition):
    """A reference or FROM line names a registry envhub may not contact; `where` names the field or line."""

    slug = "registry-not-allowed"


def split_host(registry: str) -> tuple[str, int | None]:
    """host[:port] as (host without brackets, lower case; port or None). The caller checked host_problem."""
    found = _HOST_PORT.match(registry.lower())
    if found is None:
        raise ValueError(f"'{registry}' is not host[:port]")
    host = found["host"]
    return host[1:-1] if host.startswith("[") else host, None if found["port"] is None else int(found["port"])


def ip_literal(host: str) -> Address | None:
    """The address a host (no port) writes, IPv4-mapped IPv6 unwrapped; None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_problem(host: str) -> str | None:
    """Why a host (no port) is never a registry: no DNS name or IP address, an odd numeric form, or a
    link-local, unspecified or multicast address (cloud metadata services live there); None otherwise."""
    address = ip_literal(host)
    if address is None:
        if not _DNS_NAME.match(host):
            return "it is not a host name or IP address with an optional port"
        if re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", host.rstrip(".").rsplit(".", 1)[-1]):
            return "it is a numeric address in a non-standard form"  # 127.1, 2130706433, 0x7f.0.0.1
        return None
    if address.is_link_local or address.is_unspecified or address.is_multicast:
        return f"{address} is a link-local, unspecified or multicast address"
    return None


def host_problem(registry: str) -> str | None:
    """Why `registry` (host[:port]) is no registry address, or None when it is one."""
    if "@" in registry:
        return "it carries user information (user:password@)"
    found = _HOST_PORT.match(registry.lower())
    if not found:
        return "it is not a host name or IP address with an optional port"
    port = found["port"]
    if port is not None and not 0 < int(port) < 65536:
        return f"port {port} is out of range"
    return address_problem(split_host(registry)[0])


def non_public(address: Address) -> str | None:
    """Why an address is not on the public internet (loopback, private, link-local, reserved...), or None."""
    if address.is_multicast or not address.is_global:
        return f"{address} is not a public address"
    return None


@dataclass(frozen=True)
class Allowlist:
    """The registries (host[:port], `*.suffix` wildcards) that may be contacted, and with `anywhere` (`*`) any
    registry at a public address too. `home` (the workspace registry, the local registry in local mode) is always
    allowed, loopback or not."""

    entries: frozenset[str]
    home: frozenset[str] = frozenset()
    default_registry: str = DOCKER_HUB  # where a reference without a host goes
    anywhere: bool = False

    @classmethod
    def parse(cls, text: str | None, *, home: Iterable[str] = (), also: Iterable[str | None] = (),
              default_registry: str = DOCKER_HUB) -> Allowlist:
        """The setting's value (comma-separated; unset: the defaults; `*`: any public registry), plus `also`."""
        written = DEFAULT_REGISTRIES if text is None else tuple(text.split(","))
        entries = {entry.strip().lower() for entry in (*written, *also) if entry and entry.strip()}
        homes = frozenset(h.lower() for h in home)
        return cls(frozenset(entries - {ANY}), homes, default_registry, anywhere=ANY in entries)

    def entry_problems(self) -> list[str]:
        """Entries that are no host[:port] or `*.name[:port]` (a start-up error)."""
        return [entry for entry in sorted(self.entries) if host_problem(entry.removeprefix("*."))]

    @property
    def exact(self) -> frozenset[str]:
        """The hosts listed as written, without wildcards, and the home registries."""
        return frozenset(e for e in self.entries if not e.startswith("*.")) | self.home

    @property
    def exempt(self) -> frozenset[str]:
        """Hosts contacted whatever their addresses: the home registries and entries written as IP literals."""
        literal = {e for e in self.exact if not host_problem(e) and ip_literal(split_host(e)[0]) is not None}
        return frozenset(literal) | self.home

    def refusal(self, registry: str) -> str | None:
        """Why `registry` (host[:port] as a reference names it) may not be contacted, or None."""
        name = registry.lower()
        problem = host_problem(name)
        if problem is not None:
            return f"'{_redacted(registry)}' is refused: {problem}"
        if name in self.home or name in self.entries:
            return None
        host, port = split_host(name)
        address = ip_literal(host)
        local = host == "localhost" or host.endswith(".localhost")
        if local or (address is not None and non_public(address)):
            return (f"registry '{registry}' is a loopback or private address; only the workspace's registry and "
                    f"addresses written in {ALLOWLIST_SETTING} may be used")
        if self.anywhere or (address is None and any(wildcard_match(e, host, port) for e in self.entries)):
            return None
        listed = ", ".join(sorted(self.entries | self.home))
        return (f"registry '{registry}' is not on the allowlist of registries envhub may contact "
                f"({ALLOWLIST_SETTING}: {listed}); ask an administrator to add it, or use an image from a listed one")

    def check_reference(self, text: str, *, where: str) -> str:
        """The registry host a reference names; raises RefusedRegistry when it may not be contacted."""
        registry = registry_of(text, self.default_registry)
        refusal = reference_problem(text) or self.refusal(registry)
        if refusal is not None:
            if ALLOWLIST_SETTING not in refusal:
                refusal += f"; envhub contacts only the registries {ALLOWLIST_SETTING} lists"
            raise RefusedRegistry(refusal, where=where)
        return registry

    def check_dockerfile(self, text: str, *, where: str) -> list[str]:
        """Check every image a Dockerfile pulls (FROM, COPY --from, RUN --mount from=); return their registries."""
        lines = _image_lines(text)
        hosts = []
        for image in [*base_images(text, where=where), *lines.pulled]:
            line = lines.line_of(image)
            at = f"{where}, line {line}" if line else f"{where}, FROM {image}"
            hosts.append(self.check_reference(image, where=at))
        return sorted(set(hosts))


def reference_problem(text: str) -> str | None:
    """Why a reference is no registry reference at all: a URL, a transport, user information; None otherwise."""
    if "$" in text:
        return f"'{text}' is written with a variable, which cannot be checked before the build"
    if "://" in text:
        return f"'{text.split('://', 1)[0]}://' is a URL scheme; an image reference names a registry host"
    transport = text.split(":", 1)[0].lower()
    if ":" in text and transport in TRANSPORTS:
        return f"'{transport}:' reads images from this machine, not from a registry"
    _, at, after = text.partition("@")
    if at and not _DIGEST.match(after):
        return "the reference carries user information (user:password@) or is malformed"
    return None


def registry_of(text: str, default_registry: str) -> str:
    """The registry host a reference names, as Docker reads it (templates in the tag are fine)."""
    first, slash, _ = text.partition("@")[0].partition("/")
    return first if slash and ("." in first or ":" in first or first == "localhost") else default_registry


def wildcard_match(entry: str, host: str, port: int | None) -> bool:
    if not entry.startswith("*."):
        return False
    suffix, entry_port = split_host(entry[2:])
    return host.endswith("." + suffix) and entry_port == port


def _redacted(registry: str) -> str:
    return "***@" + registry.rpartition("@")[2] if "@" in registry else registry


@dataclass(frozen=True)
class _Lines:
    """Where a Dockerfile names images: FROM lines by their image word, and images COPY/RUN pull."""

    froms: list[tuple[int, str]]
    pulled: list[str]
    pulled_at: dict[str, int]

    def line_of(self, image: str) -> int | None:
        exact = [line for line, word in self.froms if word == image] + [self.pulled_at.get(image, 0)]
        through_arg = [line for line, word in self.froms if "$" in word]
        return next((line for line in exact + through_arg if line), None)


def _image_lines(text: str) -> _Lines:
    structure = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False).structure
    froms: list[tuple[int, str]] = []
    stages: set[str] = set()
    pulled_at: dict[str, int] = {}
    for item in structure:
        words = item["value"].split()
        line = item["startline"] + 1
        if item["instruction"] == "FROM":
            images = [w for w in words if not w.startswith("--")]
            froms += [(line, images[0])] if images else []
            stages |= {words[-1].lower()} if len(words) >= 3 and words[-2].lower() == "as" else set()
        for word in words if item["instruction"] in ("COPY", "ADD", "RUN") else []:
            named = word[len("--from="):] if word.startswith("--from=") else None
            mount = _MOUNT_FROM.search(word.removeprefix("--mount=")) if word.startswith("--mount=") else None
            source = named or (mount.group(1) if mount else None)
            if source and source.lower() not in stages and not source.isdigit():
                pulled_at.setdefault(source, line)
    return _Lines(froms, list(pulled_at), pulled_at)
