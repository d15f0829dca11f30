"""Certificates for the local control plane, made with ``cryptography``.

Two CAs, as in a kubeadm cluster: the cluster CA (serving and client certificates, the
kubeconfig) and the front-proxy CA, whose client certificate the aggregator presents to
extension API servers such as the prescale adapter.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = dt.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPki:
    """Paths of every file the control plane needs."""

    ca: KeyPair
    front_proxy_ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair
    front_proxy_client: KeyPair
    service_account_key: Path
    service_account_pub: Path


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pair.key.chmod(0o600)


def _load(pair: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pair.key}: expected an EC key")
    return cert, key


def make_ca(pair: KeyPair, cn: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(pair, cert, key)


def make_leaf(pair: KeyPair, ca: KeyPair, cn: str, *, orgs: tuple[str, ...] = (),
              server: bool = False, client: bool = False,
              dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> None:
    """A leaf certificate signed by ``ca`` for server and/or client authentication."""
    ca_cert, ca_key = _load(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write(pair, builder.sign(ca_key, hashes.SHA256()), key)


def make_cluster_pki(directory: Path, address: str) -> ClusterPki:
    """Create (or reuse, when complete) the control plane's certificates in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)

    def kp(name: str) -> KeyPair:
        return KeyPair(directory / f"{name}.crt", directory / f"{name}.key")

    pki = ClusterPki(
        ca=kp("ca"), front_proxy_ca=kp("front-proxy-ca"), apiserver=kp("apiserver"),
        admin=kp("admin"), front_proxy_client=kp("front-proxy-client"),
        service_account_key=directory / "sa.key", service_account_pub=directory / "sa.pub",
    )
    if pki.service_account_pub.exists():
        return pki
    make_ca(pki.ca, "prescale-local-ca")
    make_ca(pki.front_proxy_ca, "prescale-local-front-proxy-ca")
    make_leaf(pki.apiserver, pki.ca, "kube-apiserver", server=True,
              dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local"),
              ips=("127.0.0.1", address, "10.96.0.1"))
    make_leaf(pki.admin, pki.ca, "kubernetes-admin", orgs=("system:masters",), client=True)
    make_leaf(pki.front_proxy_client, pki.front_proxy_ca, "front-proxy-client", client=True)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.service_account_key.write_bytes(sa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    pki.service_account_key.chmod(0o600)
    pki.service_account_pub.write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki
