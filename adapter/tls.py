"""Serving TLS: certificate files or a self-signed certificate, and client-cert requesting.

The context *requests* a client certificate (``CERT_OPTIONAL``) verified against the
front-proxy CA (plus an optional client CA): kubelet probes come without one, the aggregator
with its front-proxy certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(directory: Path, hosts: Sequence[str], *, days: int = 365) -> tuple[Path, Path]:
    """Write a self-signed serving certificate for ``hosts`` (DNS names or IPs); returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "localhost")])
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def server_context(cert_file: Path, key_file: Path, client_ca_pems: Sequence[bytes]) -> ssl.SSLContext:
    """TLS 1.2+ server context that requests (not requires) a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    pems = [p for p in client_ca_pems if p.strip()]
    if pems:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=b"\n".join(pems).decode())
    return ctx


class CertReloader:
    """Re-reads the serving certificate when its files change (cert-manager, Secret rotation).

    ``load_cert_chain`` on the live context applies to every handshake after it; connections
    already open keep the old certificate until they close.
    """

    def __init__(self, ctx: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
        self._ctx = ctx
        self._files = (cert_file, key_file)
        self._stamp = self._mtimes()

    def _mtimes(self) -> tuple[int, ...]:
        return tuple(f.stat().st_mtime_ns for f in self._files)

    def reload_if_changed(self) -> bool:
        """Load the files again if either changed; a half-written pair is retried next time."""
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return False
            self._ctx.load_cert_chain(str(self._files[0]), str(self._files[1]))
        except (OSError, ssl.SSLError):
            return False
        self._stamp = stamp
        return True
