"""Make a throw-away PKI for the auth tests: a CA, TLS and client certificates, a JWT signing key.

Everything is written as PEM files into one directory, for ``docker-registry`` (which reads
paths from its config), for orascp (``--from-ca-file``, ``--to-cert-file`` …) and for the test's
own httpx clients (:func:`ssl_context`).

The CA, server and client keys are P-256 (generating one takes a millisecond); the token signing
key is RSA, since the token server signs RS256 as Docker's token specification describes.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki", "ssl_context"]

# Certificates are valid from an hour ago (clock skew between the test and the registry) for a
# day: a test session never lasts that long, and a short life keeps the files useless elsewhere.
VALID_BEFORE = datetime.timedelta(hours=1)
VALID_FOR = datetime.timedelta(days=1)

SERVER_HOSTS = ("127.0.0.1", "localhost")

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files :func:`make_pki` wrote."""

    directory: Path
    ca: Path  # ca.pem: the test CA's certificate, the trust anchor for TLS and mTLS
    server_cert: Path  # server.pem: 127.0.0.1 and localhost, signed by the CA
    server_key: Path  # server-key.pem
    client_cert: Path  # client.pem: a TLS client certificate signed by the CA
    client_key: Path  # client-key.pem
    signing_cert: Path  # token-signing.pem: self-signed, the registry's rootcertbundle
    signing_key: Path  # token-signing-key.pem: RSA, signs the token server's JWTs

    @property
    def server(self) -> tuple[Path, Path]:
        """Return ``(certificate, key)`` for ``Registry(tls=...)``."""
        return self.server_cert, self.server_key

    @property
    def client(self) -> tuple[Path, Path]:
        """Return ``(certificate, key)`` of the client certificate."""
        return self.client_cert, self.client_key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "orascp tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str, issuer: x509.Name, public_key: CertificatePublicKeyTypes
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - VALID_BEFORE)
        .not_valid_after(now + VALID_FOR)
    )


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _leaf(
    subject: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _ec_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(
    path: Path, cert: x509.Certificate | None = None, key: _PrivateKey | None = None
) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    return path


def make_pki(directory: Path, *, hosts: tuple[str, ...] = SERVER_HOSTS) -> Pki:
    """Create a CA and the certificates and keys signed by it; write them as PEM in ``directory``.

    ``hosts`` become the server certificate's subject alternative names: IP SANs for
    addresses, DNS SANs for names.
    """
    directory.mkdir(parents=True, exist_ok=True)

    ca_key = _ec_key()
    ca_name = _name("orascp test CA")
    ca_cert = (
        _builder("orascp test CA", ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_cert, server_key = _leaf(
        hosts[0], ca_cert, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, sans
    )
    client_cert, client_key = _leaf(
        "orascp test client", ca_cert, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH
    )

    # The registry verifies a token's x5c chain against its rootcertbundle with Go's x509
    # defaults, which want the server-auth usage when a certificate lists usages at all: this
    # one lists none. Self-signed, so the bundle is just this certificate.
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_name = _name("orascp test token issuer")
    signing_cert = (
        _builder("orascp test token issuer", signing_name, signing_key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )

    return Pki(
        directory=directory,
        ca=_write(directory / "ca.pem", cert=ca_cert),
        server_cert=_write(directory / "server.pem", cert=server_cert),
        server_key=_write(directory / "server-key.pem", key=server_key),
        client_cert=_write(directory / "client.pem", cert=client_cert),
        client_key=_write(directory / "client-key.pem", key=client_key),
        signing_cert=_write(directory / "token-signing.pem", cert=signing_cert),
        signing_key=_write(directory / "token-signing-key.pem", key=signing_key),
    )


def ssl_context(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """Return a client context that trusts only ``ca`` and presents ``cert`` when given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context
