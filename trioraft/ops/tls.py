"""TLS for both listeners: the ssl contexts built from the `[tls]` table (the links use
them in transport/tcp.py and redis/server.py).

- Clients: the client listener presents the node's certificate and asks clients for
  none, so `redis-cli --tls --cacert ca.pem` and redis-py's `ssl=True` work as they do
  against Redis.
- Peers: mutual TLS. The accepting node requires a certificate that chains to the CA;
  the connecting node requires the same of the node it reaches, and that the
  certificate names the host of the member's `peer_addr` (a DNS or IP subjectAltName).
  The cluster token handshake then runs inside TLS as it does over plain TCP.
- TLS 1.2 at least; the rest is the ssl module's defaults.
- Every file is read once, at start. A file that cannot be read or holds nothing usable
  raises `TlsError` with one line naming the key and the file.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import attrs

from trioraft.ops.config import TlsConfig
from trioraft.transport.tls import PeerContexts


class TlsError(Exception):
    """A TLS file that cannot be used; the message names the key and the file."""


@attrs.frozen
class TlsContexts:
    """Everything the listeners need, built and checked at start."""

    #: the client listener's context
    clients: ssl.SSLContext
    peers: PeerContexts


class _EncryptedKey(Exception):
    """Raised by the password callback: the key needs a passphrase nobody can type."""


def _no_passphrase() -> bytes:
    raise _EncryptedKey


def load_contexts(tls: TlsConfig) -> TlsContexts:
    """Build the contexts of both listeners from the `[tls]` files; raise TlsError."""
    _check_certificates("tls.ca_file", tls.ca_file)
    _check_certificates("tls.cert_file", tls.cert_file)
    try:
        with tls.key_file.open("rb"):
            pass
    except OSError as exc:
        raise TlsError(f"tls.key_file: cannot read {tls.key_file}: {exc.strerror}") from None
    clients = _context(tls, server_side=True)
    accept = _context(tls, server_side=True)
    accept.verify_mode = ssl.CERT_REQUIRED
    accept.load_verify_locations(tls.ca_file)
    connect = _context(tls, server_side=False)  # verifies the chain and the host name
    connect.load_verify_locations(tls.ca_file)
    return TlsContexts(clients=clients, peers=PeerContexts(accept=accept, connect=connect))


def _check_certificates(key: str, path: Path) -> None:
    """Raise TlsError unless `path` holds at least one PEM certificate."""
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        scratch.load_verify_locations(path)
    except OSError as exc:
        raise TlsError(f"{key}: cannot read {path}: {exc.strerror}") from None
    except ssl.SSLError:
        raise TlsError(f"{key}: {path} holds no PEM certificate") from None


def _context(tls: TlsConfig, *, server_side: bool) -> ssl.SSLContext:
    """A context presenting this node's certificate; raise TlsError naming the file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_passphrase)
    except _EncryptedKey:
        raise TlsError(
            f"tls.key_file: {tls.key_file} is encrypted; trioraft needs the key without a "
            f"passphrase (readable by the node's user only)"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(
                f"tls.key_file: {tls.key_file} is not the key of {tls.cert_file}"
            ) from None
        raise TlsError(f"tls.key_file: {tls.key_file} holds no PEM private key") from None
    except OSError as exc:
        raise TlsError(f"tls.cert_file: cannot read {tls.cert_file}: {exc.strerror}") from None
    return context
