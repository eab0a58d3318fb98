"""The signing key's file and permissions, the signed checkpoint text, and canonical entries."""

from __future__ import annotations

import base64
import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpaisec.audit import merkle
from gpaisec.audit._entry import EntryError, encode_entry, parse_entry
from gpaisec.audit._keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    LocalSigner,
    load_or_create_signer,
    load_signer,
    parse_public_key,
)
from gpaisec.audit._note import open_checkpoint, sign_checkpoint, vkey
from gpaisec.errors import AuditIntegrityError, ConfigError, InputError

T = dt.datetime(2026, 11, 27, 14, 53, 5, 123456, tzinfo=dt.UTC)
ORIGIN = "gpaisec.local/audit/0123456789abcdef"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_created_on_first_use_with_private_modes(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert load_signer(keys) is None
    signer = load_or_create_signer(keys)
    assert mode(keys) == 0o700
    assert mode(keys / PRIVATE_KEY_FILE) == 0o600
    assert (keys / PUBLIC_KEY_FILE).exists()
    again = load_or_create_signer(keys)
    assert again.public_key == signer.public_key
    assert len(signer.public_key.key_id) == 64


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o644])
def test_key_readable_by_others_is_refused(tmp_path: Path, bad_mode: int) -> None:
    keys = tmp_path / "keys"
    load_or_create_signer(keys)
    os.chmod(keys / PRIVATE_KEY_FILE, bad_mode)
    with pytest.raises(ConfigError, match="readable by other users") as caught:
        load_or_create_signer(keys)
    assert caught.value.hint is not None
    assert "chmod 600" in caught.value.hint


def test_keys_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    load_or_create_signer(keys)
    os.chmod(keys, 0o755)
    with pytest.raises(ConfigError, match="open to other users") as caught:
        load_signer(keys)
    assert "chmod 700" in (caught.value.hint or "")


def test_unusable_key_files_are_config_errors(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    path = keys / PRIVATE_KEY_FILE
    path.mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        load_or_create_signer(keys)
    path.rmdir()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_or_create_signer(keys)
    path.unlink()
    target = tmp_path / "elsewhere.pem"
    target.write_bytes(LocalSigner.generate().private_pem())
    os.chmod(target, 0o600)
    path.symlink_to(target)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_or_create_signer(keys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    load_or_create_signer(keys)
    os.chmod(keys / PRIVATE_KEY_FILE, 0o000)
    with pytest.raises(ConfigError, match="cannot read"):
        load_or_create_signer(keys)


def test_public_key_formats() -> None:
    pub = LocalSigner.generate().public_key
    assert parse_public_key(pub.pem(), source="k") == pub
    assert parse_public_key(base64.b64encode(pub.raw), source="k") == pub
    assert parse_public_key(vkey(ORIGIN, pub).encode(), source="k") == pub
    with pytest.raises(InputError):
        parse_public_key(b"garbage!", source="k")
    broken = pub.pem().replace(b"MCowBQYDK2Vw", b"MCowBQYDK2V/")  # an unknown algorithm OID
    with pytest.raises(InputError):
        parse_public_key(broken, source="k")


def test_checkpoint_is_a_c2sp_signed_note() -> None:
    signer = LocalSigner.generate()
    root = merkle.root([merkle.leaf_hash(b"x")])
    ckpt = sign_checkpoint(ORIGIN, 1, root, T, signer)
    body, sig_line = ckpt.note.split("\n\n")
    assert body.split("\n") == [
        ORIGIN,
        "1",
        base64.b64encode(root).decode(),
        "time 2026-11-27T14:53:05.123456Z",
    ]
    dash, name, blob = sig_line.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", ORIGIN)
    raw = base64.b64decode(blob)
    assert len(raw) == 4 + 64
    # The key hash is SHA-256(name || "\n" || 0x01 || public key)[:4], as signed-note verifier keys use.
    assert vkey(ORIGIN, signer.public_key).split("+")[1] == raw[:4].hex()
    opened = open_checkpoint(ckpt.note, signer.public_key, origin=ORIGIN)
    assert (opened.size, opened.root, opened.time) == (1, root, T)


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, 10_000), value=st.characters(codec="utf-8"))
def test_any_change_to_a_checkpoint_fails(pos: int, value: str) -> None:
    signer = LocalSigner.generate()
    note = sign_checkpoint(ORIGIN, 42, b"\x07" * 32, T, signer).note
    i = pos % len(note)
    if note[i] == value:
        return
    changed = note[:i] + value + note[i + 1 :]
    with pytest.raises(AuditIntegrityError):
        open_checkpoint(changed, signer.public_key, origin=ORIGIN)


def test_checkpoint_from_another_origin_or_key() -> None:
    signer = LocalSigner.generate()
    note = sign_checkpoint(ORIGIN, 1, b"\x07" * 32, T, signer).note
    with pytest.raises(AuditIntegrityError, match="not this log's origin"):
        open_checkpoint(note, signer.public_key, origin="gpaisec.local/audit/other")
    with pytest.raises(AuditIntegrityError, match="not signed by the trusted key"):
        open_checkpoint(note, LocalSigner.generate().public_key)


def test_entry_round_trip_and_canonical_form() -> None:
    data = encode_entry(7, T, "os:alice", "device.add", "device:gpu-7", {"z": 1, "a": "ü", "n": None})
    assert (
        data
        == (
            '{"action":"device.add","actor":"os:alice","details":{"a":"ü","n":null,"z":1},'
            '"object":"device:gpu-7","seq":7,"time":"2026-11-27T14:53:05.123456Z"}'
        ).encode()
    )
    entry = parse_entry(data)
    assert (entry.seq, entry.time, entry.details) == (7, T, {"a": "ü", "n": None, "z": 1})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"action":"device.add", "actor":"a","details":{},"object":"o","seq":0,"time":"2026-11-27T14:53:05.123456Z"}',  # noqa: E501
        b'{"actor":"a","action":"device.add","details":{},"object":"o","seq":0,"time":"2026-11-27T14:53:05.123456Z"}',
        b'{"action":"device.add","actor":"a","details":{},"object":"o","seq":0,"time":"2026-11-27T14:53:05Z"}',
        b'{"action":"device.add","actor":"a","details":{},"object":"o","seq":0}',
        b'{"action":"device.add","actor":"a","details":[],"object":"o","seq":0,"time":"2026-11-27T14:53:05.123456Z"}',
        b'{"action":"device.add","actor":"a","details":{"x":1.0e0},"object":"o","seq":0,"time":"2026-11-27T14:53:05.123456Z"}',
        b'{"action":"device.add","actor":"a","details":{"x":NaN},"object":"o","seq":0,"time":"2026-11-27T14:53:05.123456Z"}',
        b'{"action":"device.add","actor":"a","details":{},"object":"o","seq":-1,"time":"2026-11-27T14:53:05.123456Z"}',
        b'{"action":"device.add","actor":"a","details":{},"object":"o","seq":0,"seq":0,"time":"2026-11-27T14:53:05.123456Z"}',
        b"\xff",
        b"[]",
    ],
)
def test_non_canonical_entries_are_refused(raw: bytes) -> None:
    with pytest.raises(EntryError):
        parse_entry(raw)
