"""TLS for the server: certificate and key files (keys read by wire.private_files), optional client CA (mTLS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from wire.private_files import read_private_file


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate chain and key, and the CA that client certificates must chain to (mTLS) if any."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> ServerTls:
        return cls(
            cert_chain=Path(cert).read_bytes(),
            private_key=read_private_file(key, "TLS private key"),
            client_ca=Path(client_ca).read_bytes() if client_ca else None,
        )

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        # With a client CA every connection must present a certificate it signed: grpcio's only alternative is
        # not asking for one at all, and an optional-but-unverified certificate would be worse than none.
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True)
class CertSubject:
    """The parts of a verified client certificate's subject the ledger maps to a caller (docs/security.md)."""

    common_name: str
    organization: str | None


def peer_subject(auth_context: dict[str, list[bytes]]) -> CertSubject | None:
    """The subject of the peer's certificate, if the TLS handshake verified one (None on plaintext or no cert)."""
    pems = auth_context.get("x509_pem_cert")
    if not pems:
        return None
    try:
        cert = x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(names) != 1 or len(orgs) > 1:
        return None  # ambiguous subjects map to nobody
    return CertSubject(str(names[0].value), str(orgs[0].value) if orgs else None)
