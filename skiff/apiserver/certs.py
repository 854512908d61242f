"""A per-cluster certificate authority, the API server's serving certificate and the key that signs
ServiceAccount tokens."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are generated in microseconds, unlike RSA, which keeps `skiff up` fast.
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# Named as kubeadm names them: the private key signs ServiceAccount tokens, the public one verifies them.
SA_KEY = "sa.key"
SA_PUB = "sa.pub"


def ensure_service_account_key(pki_dir: Path) -> None:
    """Create sa.key/sa.pub unless they exist. Separate from the CA so that clusters made before
    ServiceAccount tokens existed get a key on their next start without new certificates."""
    key_path, pub_path = pki_dir / SA_KEY, pki_dir / SA_PUB
    if key_path.exists() and pub_path.exists():
        return
    key = _key()
    tmp = key_path.with_suffix(".tmp")
    tmp.write_bytes(_pem_key(key))
    tmp.chmod(0o600)
    pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    # The private key lands last: a half-written pair is never taken as complete.
    tmp.replace(key_path)


def ensure_certificates(pki_dir: Path, cluster_name: str, ips: list[str], dns_names: list[str]) -> None:
    """Create ca.crt/ca.key, apiserver.crt/apiserver.key and the ServiceAccount signing key (sa.key,
    sa.pub) in pki_dir, each unless it already exists."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ensure_service_account_key(pki_dir)
    ca_crt, ca_key_path = pki_dir / "ca.crt", pki_dir / "ca.key"
    srv_crt, srv_key = pki_dir / "apiserver.crt", pki_dir / "apiserver.key"
    if srv_crt.exists() and srv_key.exists() and ca_crt.exists():
        return
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"skiff-{cluster_name}-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = _key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_key_path.write_bytes(_pem_key(ca_key))
    ca_key_path.chmod(0o600)
    ca_crt.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    srv_key.write_bytes(_pem_key(key))
    srv_key.chmod(0o600)
    srv_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
