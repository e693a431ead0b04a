"""A mosquitto configured as `deploy/mosquitto/` ships it: TLS only, passwords, and the
shipped ACL file itself (its topics use the default site name "site", which these tests use).

Certificates are made here with the openssl CLI (a CA, and a server certificate for
127.0.0.1); passwords with `mosquitto_passwd -b`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.demo.broker import MosquittoBroker, find_mosquitto

REPO = Path(__file__).resolve().parents[2]
SHIPPED_ACL = REPO / "deploy" / "mosquitto" / "acl"
SERVE_USER = "orchestrator-serve"
# the end-to-end test's agents: names unique to this run (an agent adopts workload processes
# marked with its node name, and other test runs may share this machine)
E2E_NODES = tuple(f"site-{n}-{os.urandom(3).hex()}" for n in "ab")
PASSWORDS = {
    SERVE_USER: "serve-Pa55-7c1d9e",
    "node-a": "node-a-Pa55-41f0b2",
    "node-b": "node-b-Pa55-93aa6e",
    "orchestrator-observer": "observer-Pa55-0d2c",
    E2E_NODES[0]: "site-a-Pa55-5e77c1",
    E2E_NODES[1]: "site-b-Pa55-c0ffee",
}


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make test certificates (apt: openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=orchestrator test CA", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return Certificates(ca=ca, server_cert=cert, server_key=key)


def make_password_file(path: Path, passwords: dict[str, str]) -> Path:
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        pytest.fail("mosquitto_passwd is needed (apt: mosquitto)")
    path.unlink(missing_ok=True)
    for user, password in passwords.items():
        flags = ["-b"] if path.exists() else ["-c", "-b"]
        _run(binary, *flags, str(path), user, password)
    return path


@dataclass
class SecureBroker:
    broker: MosquittoBroker
    certificates: Certificates

    @property
    def host(self) -> str:
        return self.broker.host

    @property
    def port(self) -> int:
        return self.broker.port


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: scripts/test.sh installs it when run as root")
    workdir = tmp_path_factory.mktemp("secure-mosquitto")
    certificates = make_certificates(workdir / "certs")
    passwd = make_password_file(workdir / "passwd", PASSWORDS)
    acl = workdir / "acl"
    shutil.copyfile(SHIPPED_ACL, acl)  # the shipped file, unchanged
    broker = MosquittoBroker(
        workdir,
        extra_config="\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"acl_file {acl}",
                f"cafile {certificates.ca}",
                f"certfile {certificates.server_cert}",
                f"keyfile {certificates.server_key}",
                "tls_version tlsv1.2",
                "require_certificate false",
            ]
        ),
    )
    broker.start_sync()
    yield SecureBroker(broker, certificates)
    broker.stop_sync()
