"""Settings of the HTTP API, read once at start-up; they refuse default or weak secrets.

- ``session_secret``: keys the CSRF tokens (an HMAC of the session token). From
  ``GPAISEC_SESSION_SECRET`` (hex, at least 32 bytes) or ``<workspace>/keys/api-session.key``
  (0600), generated there the first time. Never a constant in the code.
- ``secure_cookies``: cookies carry ``Secure`` (and the ``__Host-`` prefix) unless the server is
  explicitly in development mode on a loopback address.
- ``max_request_bytes``: larger request bodies are refused with 413 before they are read.
- ``tls``: the server terminates TLS itself (or a proxy does and says so): send HSTS.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gpaisec.errors import ConfigError

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "SECRET_FILE", "Settings", "is_loopback"]

SECRET_FILE = "api-session.key"  # noqa: S105 - a file name
MAX_WORKERS = 64
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
MIN_SECRET_BYTES = 32
# Values people paste from examples; refused even when long enough.
_KNOWN_BAD = {b"changethis", b"secret", b"changeme", b"password", b"development"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_secret(value: bytes, where: str) -> bytes:
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the session secret from {where} is shorter than {MIN_SECRET_BYTES} bytes",
            hint="generate one: python -c 'import secrets; print(secrets.token_hex(32))'",
        )
    if len(set(value)) < 8 or any(bad in value.lower() for bad in _KNOWN_BAD):
        raise ConfigError(
            f"the session secret from {where} looks like a placeholder, not a random value",
            hint="generate one: python -c 'import secrets; print(secrets.token_hex(32))'",
        )
    return value


def _load_or_create_secret(keys_dir: Path) -> bytes:
    path = keys_dir / SECRET_FILE
    if not path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(MIN_SECRET_BYTES))
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by other users (mode {mode:o})", hint=f"chmod 600 {path}")
    return _check_secret(path.read_bytes(), str(path))


@dataclass(frozen=True)
class Settings:
    session_secret: bytes = field(repr=False)
    secure_cookies: bool = True
    tls: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Server processes answering on the same port. In-memory limits (weights streams) are divided
    # between them, so that together they never allow more than the configured limit.
    workers: int = 1

    def __post_init__(self) -> None:
        _check_secret(self.session_secret, "the settings")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"workers must be between 1 and {MAX_WORKERS}, not {self.workers}")
        if not 1024 <= self.max_request_bytes <= 64 * 1024 * 1024:
            raise ConfigError("the maximum request size must be between 1 KiB and 64 MiB")

    @classmethod
    def load(
        cls,
        keys_dir: Path,
        *,
        host: str = "127.0.0.1",
        dev: bool = False,
        tls: bool = False,
        workers: int = 1,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from the environment and the workspace's key directory.

        ``dev`` (or ``GPAISEC_API_DEV=1``) drops the cookies' ``Secure`` flag, and only on a loopback
        ``host``; anywhere else it is refused.
        """
        env = os.environ if environ is None else environ
        dev = dev or env.get("GPAISEC_API_DEV", "") == "1"
        if dev and not is_loopback(host):
            raise ConfigError(
                f"development mode (cookies without Secure) is only for loopback addresses, not {host}",
                hint="serve with TLS, or bind 127.0.0.1",
            )
        raw = env.get("GPAISEC_SESSION_SECRET")
        if raw:
            try:
                secret = _check_secret(bytes.fromhex(raw), "GPAISEC_SESSION_SECRET")
            except ValueError:
                raise ConfigError("GPAISEC_SESSION_SECRET must be hex") from None
        else:
            secret = _load_or_create_secret(keys_dir)
        size_text = env.get("GPAISEC_API_MAX_REQUEST_BYTES")
        try:
            size = int(size_text) if size_text else DEFAULT_MAX_REQUEST_BYTES
        except ValueError:
            raise ConfigError("GPAISEC_API_MAX_REQUEST_BYTES must be a whole number") from None
        return cls(
            session_secret=secret, secure_cookies=not dev, tls=tls, max_request_bytes=size, workers=workers
        )
