"""Key providers for the crypto tests: local (always), SoftHSM2 and swtpm (private state, free ports).

The HSM and TPM fixtures skip, naming the Debian package, only when it is not installed; CI
installs them (``.ci/run``), so there they always run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpaisec.crypto.keys import secret_from_env
from gpaisec.crypto.local import Argon2Params, LocalKeyProvider

FAST_ARGON = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"


class AuditLog(list[tuple[str, dict[str, Any]]]):
    def __call__(self, action: str, details: dict[str, Any]) -> None:
        self.append((action, details))


@pytest.fixture
def audit() -> AuditLog:
    return AuditLog()


@pytest.fixture
def local_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audit: AuditLog) -> LocalKeyProvider:
    monkeypatch.setenv("GPAISEC_TEST_PASSPHRASE", "correct horse battery staple")
    p = LocalKeyProvider(
        tmp_path / "keys", secret_from_env("GPAISEC_TEST_PASSPHRASE"), params=FAST_ARGON, audit=audit
    )
    p.create("model-a")
    return p


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private SoftHSM2 token; SOFTHSM2_CONF is set for the session (the library reads it once)."""
    if shutil.which("softhsm2-util") is None or not Path(SOFTHSM_LIB).exists():
        pytest.skip("SoftHSM2 is not installed (Debian package softhsm2)")
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "gpaisec-test",
            "--so-pin",
            "1234",
            "--pin",
            "5678",
        ],
        check=True,
        capture_output=True,
    )
    yield {"label": "gpaisec-test", "pin": "5678", "library": SOFTHSM_LIB}
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


@pytest.fixture
def hsm_provider(softhsm: dict[str, str], monkeypatch: pytest.MonkeyPatch, audit: AuditLog) -> Iterator[Any]:
    from gpaisec.crypto.hsm import Pkcs11KeyProvider

    monkeypatch.setenv("GPAISEC_TEST_PIN", softhsm["pin"])
    p = Pkcs11KeyProvider(
        softhsm["label"], secret_from_env("GPAISEC_TEST_PIN"), library=softhsm["library"], audit=audit
    )
    yield p
    p.close()


@pytest.fixture(scope="session")
def swtpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private swtpm on free ports; yields the TCTI string."""
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (Debian packages swtpm, swtpm-tools)")
    if shutil.which("tpm2_createprimary") is None:
        pytest.skip("tpm2-tools is not installed (Debian package tpm2-tools)")
    state = tmp_path_factory.mktemp("swtpm")
    port = _free_port_pair()
    proc = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
         "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
         "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
         "--flags", "not-need-init,startup-clear"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"swtpm:host=127.0.0.1,port={port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def tpm_provider(swtpm: str, tmp_path: Path, audit: AuditLog) -> Any:
    from gpaisec.crypto.tpm import TpmKeyProvider

    return TpmKeyProvider(tmp_path / "tpm-state", tcti=swtpm, audit=audit)
