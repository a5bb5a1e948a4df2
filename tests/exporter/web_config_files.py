"""What the web config tests write: bcrypt hashes (cost 4, bcrypt's least, to keep tests
quick), a self-signed certificate for 127.0.0.1 and localhost, and the file itself."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "prometheus", "s3cret-scrape"


def bcrypt_hash(password: str, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def self_signed(folder: Path, name: str = "exporter") -> tuple[Path, Path]:
    """``name``.crt and ``name``.key in ``folder``: a certificate for 127.0.0.1 and
    localhost, signed by itself (so it is also the CA a client trusts)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem = folder / f"{name}.crt", folder / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def web_config(folder: Path, *, tls: bool = True, auth: bool = True) -> Path:
    """web.yml in ``folder`` as an operator writes it (certificate paths relative to it)."""
    lines = []
    if tls:
        self_signed(folder)
        lines += ["tls_server_config:", "  cert_file: exporter.crt",
                  "  key_file: exporter.key"]
    if auth:
        lines += ["basic_auth_users:", f"  {USER}: {bcrypt_hash(PASSWORD)}"]
    path = folder / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path
