"""`gpaisec serve` refuses unsafe binds before listening; --dev-tls makes a usable certificate."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

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
