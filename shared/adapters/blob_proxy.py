"""An HTTPS_PROXY that terminates TLS for `<account>.blob.<suffix>` and pipes the plain bytes to Azurite.

Azure ML's SDK uploads build contexts to `https://<account>.blob.<storage_endpoint>`, https and that host shape
hard-coded. `envhub serve --tls --emulators` runs this proxy so that, with HTTPS_PROXY pointing at it, those uploads
reach the local Azurite as DNS would route them to Blob Storage in Azure. It answers nothing else (403)."""

from __future__ import annotations

import contextlib
import select
import selectors
import socket
import ssl
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HEAD_LIMIT = 64 * 1024  # a CONNECT request's head is a few hundred bytes; more is not a client of ours
CHUNK = 64 * 1024
HANDSHAKE_TIMEOUT = 10.0
POLL = 0.5  # how often a pipe looks whether the proxy is stopping
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
LEAF_VALID = timedelta(days=1)
BACKDATE = timedelta(minutes=5)


class BlobProxy:
    """Answers `CONNECT <host>.blob.<suffix>:443` by posing as that host (a leaf signed by the given CA) and piping
    the decrypted bytes to `upstream` over plain TCP; any other request gets 403. Started by `start()` or `with`."""

    def __init__(self, upstream: tuple[str, int], ca_cert: Path, ca_key: Path, suffix: str = "envhub.test",
                 port: int = 0) -> None:
        self.upstream = upstream
        self.port = port  # 0: a free one
        self.ca_cert = ca_cert
        self.ca_key = ca_key
        self.suffix = suffix.strip(".").lower()
        self.connects: list[str] = []  # hosts of the accepted CONNECTs, in order
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._tls: ssl.SSLContext | None = None
        self._sockets: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The proxy's URL, for HTTPS_PROXY."""
        if self._listener is None:
            raise RuntimeError("the proxy is not running; call start() first")
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> BlobProxy:
        """Make the leaf certificate, listen on the loopback port (a free one for 0) and accept connections in a
        daemon thread."""
        if self._listener is not None:
            return self
        self._tls = self._context()
        self._stopping.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), name="blob-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            open_sockets, self._sockets = list(self._sockets), set()
        for sock in open_sockets:
            _close(sock)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> BlobProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _context(self) -> ssl.SSLContext:
        """A server context holding a `*.blob.<suffix>` leaf signed by the CA (made in memory, loaded from a
        temporary folder because `load_cert_chain` takes files only)."""
        certificate, key = self._leaf()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="blob-proxy-") as folder:
            cert_file, key_file = Path(folder) / "leaf.pem", Path(folder) / "leaf-key.pem"
            cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
            key_file.touch(mode=0o600)
            key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            context.load_cert_chain(cert_file, key_file)
        return context

    def _leaf(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A server certificate for `*.blob.<suffix>`, with the extensions strict verifiers (Python 3.13) want."""
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{self.ca_key} is not an EC private key")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        try:
            ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
        except x509.ExtensionNotFound:
            authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
        name = f"*.blob.{self.suffix}"
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + LEAF_VALID, ca.not_valid_after_utc))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(authority, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return certificate, key

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed by stop()
                return
            try:
                self._track(client)
            except OSError:  # stop() came between accept() and here
                return
            threading.Thread(target=self._serve, args=(client,), name="blob-proxy-connection", daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            if self._stopping.is_set():
                _close(sock)
                raise OSError("the proxy is stopping")
            self._sockets.add(sock)

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
        for sock in sockets:
            _close(sock)

    def _serve(self, client: socket.socket) -> None:
        """One client connection: the CONNECT, the TLS handshake, then the pipe."""
        opened: list[socket.socket] = [client]
        try:
            client.settimeout(HANDSHAKE_TIMEOUT)
            host = self._allowed(_head(client))
            if host is None:
                client.sendall(FORBIDDEN)
                return
            client.sendall(ESTABLISHED)
            assert self._tls is not None
            secure = self._tls.wrap_socket(client, server_side=True)  # detaches `client`; `secure` owns the fd
            opened.append(secure)
            self._track(secure)
            upstream = socket.create_connection(self.upstream, timeout=HANDSHAKE_TIMEOUT)
            opened.append(upstream)
            self._track(upstream)
            with self._lock:
                self.connects.append(host)
            _pipe(secure, upstream, self._stopping)
        except (OSError, ValueError):  # a client or upstream gone, a failed handshake, or stop() closing sockets
            pass
        finally:
            self._forget(*opened)

    def _allowed(self, head: bytes) -> str | None:
        """The host of a CONNECT to `<something>.blob.<suffix>:443`; None for anything else."""
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/1."):
            return None
        host, _, port = parts[1].rpartition(":")
        host = host.lower()
        if port != "443" or not host.endswith(f".blob.{self.suffix}") or host == f".blob.{self.suffix}":
            return None
        return host


def _head(client: socket.socket) -> bytes:
    """The request head, up to its blank line (the client waits for our answer before sending more)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        if not chunk:
            break
        head += chunk
        if len(head) > HEAD_LIMIT:
            break
    return head


def _pipe(secure: ssl.SSLSocket, upstream: socket.socket, stopping: threading.Event) -> None:
    """Copy bytes both ways until either side closes, from one thread (an SSL object is not safe to read in one
    thread while writing in another), with both sockets non-blocking."""
    secure.setblocking(False)
    upstream.setblocking(False)
    with selectors.DefaultSelector() as selector:
        selector.register(secure, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, secure)
        while not stopping.is_set():
            for key, _ in selector.select(timeout=POLL):
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                target: socket.socket = key.data
                if not _forward(source, target):
                    return


def _forward(source: socket.socket, target: socket.socket) -> bool:
    """Move what `source` has (all of it: TLS may hold decrypted bytes the selector cannot see) to `target`;
    False once `source` has closed."""
    while True:
        try:
            data = source.recv(CHUNK)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return True  # a TLS record not complete yet, or nothing after all
        if not data:
            return False
        _send(target, data)
        if not (isinstance(source, ssl.SSLSocket) and source.pending()):
            return True


def _send(target: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[target.send(view):]
        except ssl.SSLWantReadError:
            select.select([target], [], [], POLL)
        except (ssl.SSLWantWriteError, BlockingIOError):
            select.select([], [target], [], POLL)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already shut, never connected, or detached by wrap_socket
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
