"""Certificates for the local SASL_SSL broker (`KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh`):
a CA, and a certificate for 127.0.0.1 and localhost signed by it. Nothing else.

    python -m streams.local_tls DIR

writes `DIR/ca.pem` (the CA certificate, what clients trust: `CCI_SSL_CAFILE`) and
`DIR/broker.pem` (the broker's private key, its certificate and the CA's, the PEM key store
Kafka reads with `ssl.keystore.type=PEM`). The CA's private key is never written: no other
certificate can be issued from it, so a leaked directory cannot mint a trusted server.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
BROKER_FILE = "broker.pem"
# Long enough for a developer's checkout, short enough that a copied one does not live on.
VALIDITY = datetime.timedelta(days=365)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CCI local broker"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certificates(
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate, the broker certificate and the broker's private key."""
    # A minute back: the broker's clock and this one may not agree to the second.
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("CCI local CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # Clients check the address they dialled against these names (hostname
            # verification), and every listener binds to 127.0.0.1.
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            # The broker is also a TLS client of itself (inter-broker listener).
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca, broker, broker_key


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` readable by its owner only, from the first byte on."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def write_certificates(directory: Path) -> tuple[Path, Path]:
    """Write a new CA and broker certificate to `directory`; return (ca.pem, broker.pem)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, broker, key = make_certificates()
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem,
        # Kafka's PEM key store reads PKCS#8; unencrypted, since a key password would sit in
        # server.properties next to it and protect nothing.
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ca_path, broker_path = directory / CA_FILE, directory / BROKER_FILE
    _write_private(broker_path, key_pem + broker.public_bytes(pem) + ca.public_bytes(pem))
    _write_private(ca_path, ca.public_bytes(pem))
    return ca_path, broker_path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m streams.local_tls DIR", file=sys.stderr)
        return 2
    ca_path, broker_path = write_certificates(Path(args[0]))
    print(f"wrote {ca_path} and {broker_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
