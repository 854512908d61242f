"""TLS termination: one SSLContext per certificate, chosen by SNI.

The listening socket carries a default context (the fake certificate, like ingress-nginx's
"Kubernetes Ingress Controller Fake Certificate") whose `sni_callback` swaps in the context of the
certificate the route table has for the requested name. Contexts are built when a table arrives,
never during a handshake, and reused across tables while the Secret's bytes stay the same.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from collections.abc import Callable

from skiff.ingress.routes import RouteTable, TLSCert

log = logging.getLogger("skiff.ingress.tls")

FAKE_CERT_CN = "Skiff Ingress Controller Fake Certificate"


def fake_certificate() -> tuple[bytes, bytes]:
    """A self-signed certificate for names nobody configured (EC P-256: generated in ~1 ms)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Skiff"),
                      x509.NameAttribute(NameOID.COMMON_NAME, FAKE_CERT_CN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _memory_file(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def context_from_pem(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """ssl can only load certificates from files. They are memory files (memfd), not files in a temp
    dir: a process killed while loading leaves no private key behind on disk."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    cert_fd = _memory_file("tls.crt", cert_pem)
    try:
        key_fd = _memory_file("tls.key", key_pem)
        try:
            ctx.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
        finally:
            os.close(key_fd)
    finally:
        os.close(cert_fd)
    return ctx


class CertificateStore:
    """Contexts for the current table, plus the default context the listener starts handshakes with."""

    def __init__(self, default_cert: tuple[bytes, bytes], table: Callable[[], RouteTable]):
        self._table = table
        self._contexts: dict[tuple[bytes, bytes], ssl.SSLContext] = {}
        self.default = context_from_pem(*default_cert)
        self.default.sni_callback = self._on_sni

    def update(self, table: RouteTable) -> None:
        wanted = {(c.cert_pem, c.key_pem): c for c in [*table.tls.values(),
                                                      *([table.tls_default] if table.tls_default else [])]}
        fresh: dict[tuple[bytes, bytes], ssl.SSLContext] = {}
        for k, cert in wanted.items():
            ctx = self._contexts.get(k)
            if ctx is None:
                try:
                    ctx = context_from_pem(cert.cert_pem, cert.key_pem)
                except (ssl.SSLError, ValueError, OSError) as e:
                    log.warning("TLS secret %s is unusable, serving the default certificate instead: %s",
                                cert.secret, e)
                    continue
            fresh[k] = ctx
        self._contexts = fresh

    def context_for(self, cert: TLSCert | None) -> ssl.SSLContext | None:
        return self._contexts.get((cert.cert_pem, cert.key_pem)) if cert is not None else None

    def _on_sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        ctx = self.context_for(self._table().certificate_for(server_name))
        if ctx is not None:
            sslobj.context = ctx
        return None
