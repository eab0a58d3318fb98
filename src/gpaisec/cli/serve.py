"""`gpaisec serve`: the HTTP API (uvicorn), TLS by default off loopback.

Refusals before anything listens: a non-loopback address without TLS (unless ``--behind-proxy``
says a TLS-terminating proxy is in front), half a certificate pair, ``--dev`` off loopback.
``--dev-tls`` makes a self-signed certificate for this host in ``<workspace>/keys/dev-tls`` (key
0600), valid 30 days, for trying the API out; browsers will warn, as they should.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from gpaisec.api.settings import is_loopback
from gpaisec.cli import common
from gpaisec.errors import ConfigError, InputError

__all__ = ["dev_certificate", "register", "serve"]

DEV_TLS_DIR = "dev-tls"
DEV_TLS_DAYS = 30


def dev_certificate(keys_dir: Path, host: str, *, now: dt.datetime | None = None) -> tuple[Path, Path]:
    """A self-signed certificate and key for ``host`` and loopback; reused while it has a day left."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = now or dt.datetime.now(dt.UTC)
    where = keys_dir / DEV_TLS_DIR
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc - now > dt.timedelta(days=1):
            return cert_path, key_path
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        if host != "localhost":
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gpaisec development ({host})")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=DEV_TLS_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem_key)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 8443,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    dev_tls: Annotated[
        bool, typer.Option("--dev-tls", help="Use a self-signed certificate made in the workspace.")
    ] = False,
    behind_proxy: Annotated[
        bool,
        typer.Option(
            "--behind-proxy",
            help="A TLS-terminating proxy is in front: trust its X-Forwarded-* headers.",
        ),
    ] = False,
    trusted_proxy: Annotated[
        str, typer.Option(help="With --behind-proxy: the proxy addresses to trust (comma-separated).")
    ] = "127.0.0.1",
    dev: Annotated[
        bool, typer.Option("--dev", help="Development: cookies without Secure (loopback only).")
    ] = False,
    access_log: Annotated[bool, typer.Option(help="Log every request (uvicorn's access log).")] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes (one per core is a good start). Weights-stream limits are shared out "
            "between them, so together they never exceed the configured limits.",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (OpenAPI at /api/docs). TLS is required off loopback."""
    import uvicorn

    from gpaisec.api import Settings, create_app
    from gpaisec.api.app import tune_for_serving

    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    if dev_tls and tls_cert is not None:
        raise InputError("choose --dev-tls or --tls-cert/--tls-key, not both")
    tls = dev_tls or tls_cert is not None
    if not is_loopback(host) and not tls and not behind_proxy:
        raise ConfigError(
            f"refusing to serve {host} without TLS",
            hint="give --tls-cert and --tls-key, --behind-proxy behind a TLS proxy, or bind 127.0.0.1",
        )
    ws = common.workspace()
    settings = Settings.load(ws.keys_dir, host=host, dev=dev, tls=tls, workers=workers)
    if dev_tls:
        tls_cert, tls_key = dev_certificate(ws.keys_dir, host)
    scheme = "https" if tls else "http"
    common.info(
        f"serving the gpaisec API on {scheme}://{host}:{port}/api/v1 (docs at /api/docs)"
        + (f" with {workers} processes" if workers > 1 else "")
    )
    target: Any
    if workers > 1:
        # Each worker process builds its own app from the same workspace and settings. The audit
        # signing key (like the session secret above) is made here, once, before any worker races to.
        from gpaisec.api import asgi

        ws.audit_signer()
        os.environ[asgi.ENV_HOME] = str(ws.home)
        os.environ[asgi.ENV_HOST] = host
        os.environ[asgi.ENV_TLS] = "1" if tls else "0"
        os.environ[asgi.ENV_WORKERS] = str(workers)
        if dev:
            os.environ["GPAISEC_API_DEV"] = "1"
        if ws.database_url:
            os.environ["GPAISEC_DATABASE_URL"] = ws.database_url
        target = "gpaisec.api.asgi:app_from_environment"
    else:
        target = create_app(ws, settings)
        tune_for_serving(ws)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "ssl_certfile": str(tls_cert) if tls_cert else None,
        "ssl_keyfile": str(tls_key) if tls_key else None,
        "proxy_headers": behind_proxy,
        "forwarded_allow_ips": trusted_proxy if behind_proxy else None,
        "server_header": False,
        "log_level": "info",
        "access_log": access_log,
    }
    if workers > 1:
        uvicorn.run(target, factory=True, workers=workers, **options)
    else:
        uvicorn.Server(uvicorn.Config(target, **options)).run()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
