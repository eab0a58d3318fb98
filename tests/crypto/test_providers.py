"""Key providers: local key file, PKCS#11 (SoftHSM2) and TPM 2.0 (swtpm); rotation and rewrap."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from gpaisec.crypto import (
    KeyProvider,
    KeyUnavailableError,
    inspect,
    retirable_versions,
    rewrap,
    seal_file,
    secret_from_env,
    unseal_to,
    versions_in_use,
)
from gpaisec.crypto.local import LocalKeyProvider, WrongPassphraseError
from gpaisec.errors import ConfigError, ConflictError, IntegrityError
from tests.crypto.conftest import FAST_ARGON, AuditLog


def test_local_key_file_is_private(local_provider: LocalKeyProvider) -> None:
    path = local_provider.directory / "model-a.kek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"correct horse" not in path.read_bytes()


def test_local_refuses_open_permissions(tmp_path: Path, local_provider: LocalKeyProvider) -> None:
    path = local_provider.directory / "model-a.kek"
    path.chmod(0o644)
    fresh = LocalKeyProvider(
        local_provider.directory, secret_from_env("GPAISEC_TEST_PASSPHRASE"), params=FAST_ARGON
    )
    with pytest.raises(ConfigError, match="accessible to others") as exc:
        fresh.wrap("model-a", os.urandom(32))
    assert exc.value.hint == f"chmod 600 {path}"


def test_local_wrong_passphrase(local_provider: LocalKeyProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTHER_PASS", "wrong")
    other = LocalKeyProvider(local_provider.directory, secret_from_env("OTHER_PASS"), params=FAST_ARGON)
    with pytest.raises(WrongPassphraseError):
        other.wrap("model-a", os.urandom(32))


def test_local_missing_env_and_key(tmp_path: Path) -> None:
    p = LocalKeyProvider(tmp_path, secret_from_env("GPAISEC_NOT_SET_ANYWHERE"), params=FAST_ARGON)
    with pytest.raises(KeyUnavailableError):
        p.wrap("nope", os.urandom(32))
    with pytest.raises(ConfigError, match="GPAISEC_NOT_SET_ANYWHERE"):
        p.create("k")


def _exercise(provider: KeyProvider, audit: AuditLog, key_id: str, tmp_path: Path) -> None:
    """The contract every provider meets: create, wrap/unwrap, rotate, rewrap, retire, audit."""
    assert provider.create(key_id) == 1
    with pytest.raises(ConflictError):
        provider.create(key_id)
    dk = os.urandom(32)
    w = provider.wrap(key_id, dk)
    assert w.version == 1
    assert dk not in w.blob
    assert provider.unwrap(w) == dk
    tampered = type(w)(w.key_id, w.version, w.algorithm, w.blob[:-1] + bytes([w.blob[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        provider.unwrap(tampered)
    with pytest.raises(KeyUnavailableError):
        provider.unwrap(type(w)(w.key_id, 99, w.algorithm, w.blob))

    data = os.urandom(300_000)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "w").write_bytes(data)
    seal_file(tmp_path / "w", tmp_path / "w.sealed", provider, key_id, chunk_size=65536)
    before = (tmp_path / "w.sealed").read_bytes()
    assert provider.rotate(key_id) == 2
    assert retirable_versions(provider, key_id, [tmp_path]) == []
    assert rewrap(tmp_path / "w.sealed", provider) == (1, 2)
    after = (tmp_path / "w.sealed").read_bytes()
    core, slots = inspect(tmp_path / "w.sealed")
    assert after[core.payload_offset :] == before[core.payload_offset :]  # data not re-encrypted
    assert [s.key_version for s in slots] == [2]
    assert versions_in_use([tmp_path]) == {key_id: {2}}
    assert retirable_versions(provider, key_id, [tmp_path]) == [1]
    with pytest.raises(ConflictError):
        provider.retire(key_id, 2)
    provider.retire(key_id, 1)
    assert provider.versions(key_id) == [2]
    buf = io.BytesIO()
    unseal_to(tmp_path / "w.sealed", buf, provider)
    assert buf.getvalue() == data
    actions = [a for a, _ in audit]
    for needed in ("key.create", "key.wrap", "key.unwrap", "key.rotate", "key.retire"):
        assert needed in actions
    assert all(d["key_id"] == key_id and d["provider"] == provider.kind for _, d in audit)


def test_local_provider_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audit: AuditLog) -> None:
    monkeypatch.setenv("P", "pw")
    provider = LocalKeyProvider(tmp_path / "keys", secret_from_env("P"), params=FAST_ARGON, audit=audit)
    _exercise(provider, audit, "model-b", tmp_path)


def test_audit_hook_failure_blocks_key_use(local_provider: LocalKeyProvider) -> None:
    def refuse(action: str, details: dict[str, Any]) -> None:
        raise ConfigError("audit log unavailable")

    local_provider._audit = refuse
    with pytest.raises(ConfigError, match="audit"):
        local_provider.wrap("model-a", os.urandom(32))


def test_pkcs11_provider_contract(hsm_provider: Any, audit: AuditLog, tmp_path: Path) -> None:
    from pkcs11 import Attribute

    _exercise(hsm_provider, audit, "model-hsm", tmp_path)
    kek = hsm_provider._find("model-hsm", 2)
    assert kek[Attribute.EXTRACTABLE] is False
    assert kek[Attribute.SENSITIVE] is True
    assert kek[Attribute.NEVER_EXTRACTABLE] is True


def test_tpm_provider_contract(tpm_provider: Any, audit: AuditLog, tmp_path: Path) -> None:
    _exercise(tpm_provider, audit, "model-tpm", tmp_path / "files")


def test_tpm_blobs_are_useless_elsewhere(tpm_provider: Any, tmp_path: Path) -> None:
    tpm_provider.create("m")
    pub = (tpm_provider.state_dir / "m" / "v1.priv").read_bytes()
    assert len(pub) > 0
    w = tpm_provider.wrap("m", b"\x07" * 32)
    assert b"\x07" * 32 not in w.blob
