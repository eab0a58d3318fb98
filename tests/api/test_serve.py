"""`gpaisec serve` refuses unsafe binds before listening; --dev-tls makes a usable certificate."""

from __future__ import annotations

import datetime as dt
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509

from gpaisec.cli.app import main
from gpaisec.cli.serve import dev_certificate


def test_refuses_a_public_address_without_tls(tmp_path: Path) -> None:
    assert main(["--workspace", str(tmp_path), "serve", "--host", "0.0.0.0"]) == 3
    assert main(["--workspace", str(tmp_path), "serve", "--host", "10.1.2.3", "--port", "9000"]) == 3


def test_refuses_half_a_certificate_and_dev_cookies_off_loopback(tmp_path: Path) -> None:
    assert main(["--workspace", str(tmp_path), "serve", "--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert main(["--workspace", str(tmp_path), "serve", "--host", "0.0.0.0", "--dev", "--behind-proxy"]) == 3


def test_dev_certificate_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    cert_path, key_path = dev_certificate(tmp_path, "192.0.2.7")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "192.0.2.7"}
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=29)
    before = cert_path.read_bytes()
    assert dev_certificate(tmp_path, "192.0.2.7")[0].read_bytes() == before


def test_serve_with_two_processes_answers_and_shares_one_audit_key(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "ws"
    exe = Path(sys.executable).with_name("gpaisec")
    proc = subprocess.Popen(
        [
            str(exe),
            "-w",
            str(home),
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--dev",
            "--no-access-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
        assert r.status_code == 200
        # Both processes are up (uvicorn logs each); the API refuses a stranger from any of them.
        for _ in range(6):
            assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=5).status_code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    log = err.decode()
    assert log.count("Application startup complete") == 2, log
    assert "died" not in log
    assert sorted(p.name for p in (home / "keys").glob("audit-*")) == [
        "audit-ed25519.pem",
        "audit-ed25519.pub.pem",
    ]
