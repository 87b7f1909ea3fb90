"""TLS and mutual TLS on real servers, with a throwaway CA made at test time (no key is ever committed)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from client.ledger_client import Connection, LedgerClient
from ledger.api_keys import Role, issue_key
from server.app import RunningServer, start_server
from server.tls import ServerTls
from storage.sql.keystore import SqlKeyStore
from tests.conftest import FixedClock
from wire.private_files import read_private_file


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _name(common_name: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org is not None:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(name: str = "ledger test CA") -> tuple[Pem, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)), key, cert


def issue_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str, org: str | None, server: bool
) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class Pki:
    """Files of a throwaway PKI: a CA, a server certificate, client certificates, and an unrelated CA."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path

    def client(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_cert = make_ca()
    other, _, _ = make_ca("somebody else's CA")

    def write(name: str, data: bytes, private: bool = False) -> Path:
        path = base / name
        path.write_bytes(data)
        path.chmod(0o600 if private else 0o644)
        return path

    server = issue_cert(ca_key, ca_cert, "ledger.test", None, server=True)
    for name, (cn, org) in {
        "auditor": ("auditor", None),
        "acme-admin": ("org-admin", "acme"),
        "admin-without-org": ("org-admin", None),
        "stranger": ("bob", None),
    }.items():
        pem = issue_cert(ca_key, ca_cert, cn, org, server=False)
        write(f"{name}.crt", pem.cert)
        write(f"{name}.key", pem.key, private=True)
    return Pki(
        base,
        write("ca.crt", ca.cert),
        write("server.crt", server.cert),
        write("server.key", server.key, private=True),
        write("other-ca.crt", other.cert),
    )


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('tls') / 'ledger.db'}"
    running = start_server(url, clock=FixedClock(), tls=ServerTls.from_files(pki.server_cert, pki.server_key))
    yield running
    running.stop(grace=None)


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('mtls') / 'ledger.db'}"
    tls = ServerTls.from_files(pki.server_cert, pki.server_key, client_ca=pki.ca)
    running = start_server(url, clock=FixedClock(), tls=tls, key_cache_seconds=0)
    yield running
    running.stop(grace=None)


def list_logs(port: int, connection: Connection) -> grpc.StatusCode:
    with LedgerClient(f"127.0.0.1:{port}", retries=0, timeout=5, connection=connection) as client:
        try:
            list(client.logs())
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


def head(port: int, connection: Connection, log_id: str) -> grpc.StatusCode:
    with LedgerClient(f"127.0.0.1:{port}", retries=0, timeout=5, connection=connection) as client:
        try:
            client.head(log_id)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


def test_a_client_trusting_the_servers_ca_connects_and_others_cannot(pki: Pki, tls_server: RunningServer) -> None:
    assert list_logs(tls_server.port, Connection(tls_ca=str(pki.ca))) == grpc.StatusCode.OK
    assert list_logs(tls_server.port, Connection(tls_ca=str(pki.other_ca))) == grpc.StatusCode.UNAVAILABLE
    assert list_logs(tls_server.port, Connection()) == grpc.StatusCode.UNAVAILABLE  # plaintext to a TLS port


def test_mutual_tls_maps_the_certificate_subject_to_a_role_and_org(pki: Pki, mtls_server: RunningServer) -> None:
    def as_client(name: str) -> Connection:
        cert, key = pki.client(name)
        return Connection(tls_ca=str(pki.ca), tls_cert=str(cert), tls_key=str(key))

    port = mtls_server.port
    assert list_logs(port, as_client("auditor")) == grpc.StatusCode.OK  # CN=auditor
    # CN=org-admin, O=acme: its own org only, and the same refusal whatever the other org.
    assert head(port, as_client("acme-admin"), "org/acme") == grpc.StatusCode.NOT_FOUND
    assert head(port, as_client("acme-admin"), "org/beta") == grpc.StatusCode.PERMISSION_DENIED
    assert list_logs(port, as_client("acme-admin")) == grpc.StatusCode.PERMISSION_DENIED
    # A certificate the CA signed but whose subject names no role, or an org-admin with no org, is nobody.
    assert list_logs(port, as_client("stranger")) == grpc.StatusCode.UNAUTHENTICATED
    assert list_logs(port, as_client("admin-without-org")) == grpc.StatusCode.UNAUTHENTICATED
    # No client certificate: the handshake itself fails.
    assert list_logs(port, Connection(tls_ca=str(pki.ca))) == grpc.StatusCode.UNAVAILABLE
    # An API key, when presented, decides over the certificate.
    issued = issue_key(Role.ORG_ADMIN, "beta", 0)
    SqlKeyStore(mtls_server.ledger.store.writer).add(issued.record)  # type: ignore[attr-defined]
    cert, key = pki.client("auditor")
    keyed = Connection(api_key=issued.token, tls_ca=str(pki.ca), tls_cert=str(cert), tls_key=str(key))
    assert head(port, keyed, "org/beta") == grpc.StatusCode.NOT_FOUND
    assert list_logs(port, keyed) == grpc.StatusCode.PERMISSION_DENIED


def test_a_private_key_readable_by_others_is_warned_about_without_its_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "tls.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n")
    key.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="usageledger.tls"):
        read_private_file(key, "TLS private key")
    assert not caplog.records
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="usageledger.tls"):
        read_private_file(key, "TLS private key")
    [warning] = caplog.records
    assert "0644" in warning.getMessage() and "chmod 600" in warning.getMessage()
    assert "c2VjcmV0" not in warning.getMessage()


def _run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", "LEDGER_DATABASE_URL": "", **(env or {})}
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=60, env=full_env)


def test_the_documented_setup_keys_tls_auth_and_ledgerctl_end_to_end(pki: Pki, tmp_path: Path) -> None:
    """docs/security.md's walk-through: create a key, serve TLS with --require-auth, call it with ledgerctl."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    created = _run("-m", "ledgerctl", "keys", "create", "--role", "auditor", "--database-url", url, "--json")
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["api_key"]
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "server.main", "--database-url", url, "--listen", "127.0.0.1:0"),
            *("--require-auth", "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"serving on 127\.0\.0\.1:(\d+) \(.*TLS, auth required\)", line)
        assert match, line
        target = f"127.0.0.1:{match.group(1)}"
        listed = _run("-m", "ledgerctl", "--tls-ca", str(pki.ca), "log", "list", "--json", "--target", target)
        assert listed.returncode == 1 and json.loads(listed.stdout)["code"] == "UNAUTHENTICATED"
        listed = _run(
            *("-m", "ledgerctl", "--tls-ca", str(pki.ca), "log", "list", "--json", "--target", target),
            env={"LEDGER_API_KEY": token},
        )
        assert listed.returncode == 0, listed.stderr
        assert [log["log_id"] for log in json.loads(listed.stdout)] == ["system"]
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert token not in errors and token.split("_", 2)[2] not in errors
    # Structured logs: one JSON object per line (gRPC's C core writes its own plain lines too).
    records = [json.loads(line) for line in errors.splitlines() if line.startswith("{")]
    caller = "key " + token.split("_")[1]
    assert any(r["logger"] == "usageledger.access" and r["caller"] == caller for r in records), records


def test_ledgerctl_connection_options_are_checked_before_any_call(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from client.cli import app
    from tests.cli_support import LedgerctlRunner

    for name in ("LEDGER_API_KEY", "LEDGER_TLS_CA", "LEDGER_TLS_CERT", "LEDGER_TLS_KEY"):
        monkeypatch.setenv(name, "")  # restored afterwards: the options set these for the command's process
    missing = LedgerctlRunner().invoke(app, ["--tls-ca", str(tmp_path / "nope.crt"), "log", "list"])
    assert missing.exit_code == 2 and "nope.crt" in missing.output
    cert, _ = pki.client("auditor")
    unpaired = LedgerctlRunner().invoke(app, ["--tls-ca", str(pki.ca), "--tls-cert", str(cert), "log", "list"])
    assert unpaired.exit_code == 2 and "--tls-key" in unpaired.output
    assert Connection.from_env({"LEDGER_API_KEY": "k", "LEDGER_TLS_CA": "ca.crt"}) == Connection("k", "ca.crt")
    assert "secret-key" not in repr(Connection("secret-key"))


def test_the_server_refuses_half_a_tls_configuration_and_remote_plaintext(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from server import main

    monkeypatch.setattr(main, "configure_logging", lambda *_: None)  # leave the test process's logging alone
    assert main.main(["--listen", "127.0.0.1:0", "--tls-cert", str(pki.server_cert)]) == 2
    assert "--tls-key" in capsys.readouterr().err
    assert main.main(["--listen", "0.0.0.0:0"]) == 2
    assert "refusing to serve plaintext" in capsys.readouterr().err
