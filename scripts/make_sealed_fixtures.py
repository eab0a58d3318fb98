"""Build the committed hostile sealed files under ``tests/fixtures/sealed/`` (byte-reproducible).

    .venv/bin/python scripts/make_sealed_fixtures.py            # (re)write the fixtures
    .venv/bin/python scripts/make_sealed_fixtures.py --check    # exit 1 if a committed fixture differs

Every fixture starts from a file sealed by the real API (:func:`gpaisec.crypto.seal_file`) under the
**test-only** key in ``tests/fixtures/sealed/TEST-ONLY-KEY/``: a local key file whose passphrase is
:data:`TEST_ONLY_PASSPHRASE`, written here in clear. That key protects nothing and must never seal
anything real. It has two versions; the fixtures are sealed under version 2.

The bytes are reproducible: sealing draws its data key, salt, nonce prefix and wrapping nonce from
``os.urandom``, which this script replaces, while it seals, with a generator seeded by the fixture's
name (SHAKE-256). The key file itself is generated once (it holds a creation time) and then reused.

Each fixture is named after what was done to it and listed in :data:`EXPECTED` with the step of the
opening procedure (``docs/sealed-format.md``) that must refuse it and the message that says why.
"Keyed" fixtures were forged with the file's own data key (which the test-only KEK lets this script
unwrap): they reach the inner checks (chunk tags, final flag, digest) that a forger without the key
cannot get past the outer ones to test.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gpaisec.crypto import WrappedKey, seal_file
from gpaisec.crypto import sealed as fmt
from gpaisec.crypto.local import Argon2Params, LocalKeyProvider

HERE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sealed"
KEY_DIR = "TEST-ONLY-KEY"
KEY_ID = "test-only-fixture-kek"
TEST_ONLY_PASSPHRASE = "gpaisec test fixtures only; this is public and protects nothing"  # noqa: S105
CHUNK_SIZE = fmt.MIN_CHUNK_SIZE
PLAINTEXT_LENGTH = 3 * CHUNK_SIZE + 1000  # three full chunks and a short final one
SEALED_VERSION = 2


@dataclass(frozen=True)
class Expectation:
    """What opening the fixture must do: ``step`` is ``opens`` or the refusing step; ``match`` a regex."""

    step: str
    match: str
    what: str


_SIZE = r"is \d+ bytes but its header describes \d+ \(truncated or extended\)"
_LAST = PLAINTEXT_LENGTH // CHUNK_SIZE  # index of the final chunk
_COUNT = _LAST + 1

EXPECTED: dict[str, Expectation] = {
    "good.sealed": Expectation("opens", "", "sealed by seal_file; opens to plaintext('good')"),
    "truncated-at-chunk-boundary.sealed": Expectation(
        "size", _SIZE, "the final chunk removed whole (the cut falls on a chunk boundary)"
    ),
    "truncated-mid-chunk.sealed": Expectation("size", _SIZE, "cut in the middle of chunk 1"),
    "extended-extra-chunk.sealed": Expectation(
        "size", _SIZE, "keyed: a genuine chunk with the next counter and the final flag appended"
    ),
    "chunks-reordered.sealed": Expectation(
        "chunk", rf"chunk 0 of {_COUNT} does not verify", "chunks 0 and 1 swapped"
    ),
    "header-swapped.sealed": Expectation(
        "chunk",
        rf"chunk 0 of {_COUNT} does not verify",
        "core and key slots of another file of the same length (same KEK) on this file's chunks",
    ),
    "final-flag-cleared.sealed": Expectation(
        "chunk",
        rf"chunk {_LAST} of {_COUNT} does not verify",
        "keyed: the last chunk re-encrypted with final flag 0 (its nonce and stream id unchanged)",
    ),
    "wrong-key-version.sealed": Expectation(
        "slot",
        rf"no key slot of .* opens: slot 0 \({KEY_ID} v1\): .*does not unwrap",
        "key slot 0 names KEK version 1 (which exists) instead of 2",
    ),
    "key-slot-wrapped-key-flipped.sealed": Expectation(
        "slot",
        rf"no key slot of .* opens: slot 0 \({KEY_ID} v{SEALED_VERSION}\): .*does not unwrap",
        "one bit flipped in the wrapped data key of key slot 0",
    ),
    "key-slot-padding-flipped.sealed": Expectation(
        "slot",
        r"no key slot of .* opens: slot 0 .*the key slot's tag does not verify",
        "one bit flipped in the zero padding of key slot 0 (only the slot tag covers it)",
    ),
    "chunk-byte-flipped.sealed": Expectation(
        "chunk", rf"chunk 2 of {_COUNT} does not verify", "one bit flipped in the ciphertext of chunk 2"
    ),
    "digest-mismatch.sealed": Expectation(
        "digest",
        r"the plaintext's blake3 digest does not match the header",
        "keyed: the core's digest changed and the slot re-tagged; every chunk verifies",
    ),
}


def plaintext(name: str) -> bytes:
    """The deterministic plaintext of the fixture called ``name``."""
    return hashlib.shake_256(b"gpaisec sealed fixture plaintext|" + name.encode()).digest(PLAINTEXT_LENGTH)


@contextlib.contextmanager
def _seeded_urandom(seed: str) -> Iterator[None]:
    """Replace ``os.urandom`` with a SHAKE-256 stream of ``seed`` (fixture building only)."""
    stream = hashlib.shake_256(b"gpaisec sealed fixture randomness|" + seed.encode()).digest(4096)
    used = 0

    def fake(n: int) -> bytes:
        nonlocal used
        if used + n > len(stream):
            raise RuntimeError("the fixture's random stream is exhausted")
        used += n
        return stream[used - n : used]

    real: Callable[[int], bytes] = os.urandom
    os.urandom = fake
    try:
        yield
    finally:
        os.urandom = real


def _passphrase() -> bytes:
    return TEST_ONLY_PASSPHRASE.encode()


@contextlib.contextmanager
def provider(key_dir: Path) -> Iterator[LocalKeyProvider]:
    """The test-only key, copied to a private directory (Git does not keep the file's mode 0600)."""
    with tempfile.TemporaryDirectory(prefix="gpaisec-fixture-key-") as d:
        keys = Path(d) / "keys"
        shutil.copytree(key_dir, keys)
        keys.chmod(0o700)
        for f in keys.iterdir():
            f.chmod(0o600)
        yield LocalKeyProvider(keys, _passphrase)


def ensure_key(key_dir: Path) -> None:
    """Create the test-only key (versions 1 and 2) if it is not there yet; never replace it."""
    if (key_dir / f"{KEY_ID}.kek").exists():
        return
    p = LocalKeyProvider(
        key_dir, _passphrase, params=Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
    )
    p.create(KEY_ID)
    p.rotate(KEY_ID)


def _seal(p: LocalKeyProvider, work: Path, name: str) -> bytes:
    src, dst = work / f"{name}.plain", work / f"{name}.sealed"
    src.write_bytes(plaintext(name))
    with _seeded_urandom(name):
        res = seal_file(src, dst, p, KEY_ID, chunk_size=CHUNK_SIZE)
    assert res.key_version == SEALED_VERSION
    return dst.read_bytes()


@dataclass(frozen=True)
class _Opened:
    core: fmt.Core
    slot: fmt.KeySlot
    payload_key: bytes
    header_key: bytes

    def chunk(self, blob: bytes, i: int) -> bytes:
        off = self.core.chunk_offset(i)
        return blob[off : off + self.core.chunk_length(i) + fmt.TAG_SIZE]

    def encrypt_chunk(self, i: int, data: bytes, *, final: bool) -> bytes:
        aad = self.core.stream_id + (b"\x01" if final else b"\x00")
        return AESGCM(self.payload_key).encrypt(self.core.nonce_prefix + i.to_bytes(8, "big"), data, aad)


def _open(p: LocalKeyProvider, blob: bytes) -> _Opened:
    core = fmt.parse_core(blob)
    slot = fmt.parse_slot(blob[core.slot_offset(0) : core.slot_offset(1)])
    assert slot is not None
    data_key = p.unwrap(WrappedKey(slot.key_id, slot.key_version, slot.algorithm, slot.wrapped))
    payload_key, header_key = fmt.derive_keys(data_key, core)
    return _Opened(core, slot, payload_key, header_key)


def _flip(blob: bytes, pos: int) -> bytes:
    out = bytearray(blob)
    out[pos] ^= 0x01
    return bytes(out)


def build(key_dir: Path | None = None) -> dict[str, bytes]:
    """Every fixture's bytes by name (``key_dir`` defaults to the committed test-only key)."""
    key_dir = key_dir or HERE / KEY_DIR
    out: dict[str, bytes] = {}
    with provider(key_dir) as p, tempfile.TemporaryDirectory(prefix="gpaisec-fixtures-") as d:
        work = Path(d)
        good = _seal(p, work, "good")
        other = _seal(p, work, "other")
        o = _open(p, good)
        core, hdr = o.core, good[: o.core.payload_offset]
        chunks = [o.chunk(good, i) for i in range(core.chunk_count)]
        assert len(chunks) == _COUNT
        assert core.chunk_length(_LAST) < CHUNK_SIZE

        out["good.sealed"] = good
        out["truncated-at-chunk-boundary.sealed"] = good[: core.chunk_offset(_LAST)]
        out["truncated-mid-chunk.sealed"] = good[: core.chunk_offset(1) + CHUNK_SIZE // 2]
        extra = o.encrypt_chunk(_COUNT, plaintext("extra")[:CHUNK_SIZE], final=True)
        out["extended-extra-chunk.sealed"] = good + extra
        out["chunks-reordered.sealed"] = hdr + chunks[1] + chunks[0] + b"".join(chunks[2:])
        out["header-swapped.sealed"] = other[: core.payload_offset] + good[core.payload_offset :]
        not_final = o.encrypt_chunk(_LAST, plaintext("good")[_LAST * CHUNK_SIZE :], final=False)
        out["final-flag-cleared.sealed"] = hdr + b"".join(chunks[:_LAST]) + not_final

        # Slot 0: u32 generation | u8 len | key id | u32 version | u8 len | algorithm | u16 len | wrapped
        version_at = core.slot_offset(0) + 5 + len(KEY_ID.encode())
        assert struct.unpack_from(">I", good, version_at) == (SEALED_VERSION,)
        wrong = bytearray(good)
        struct.pack_into(">I", wrong, version_at, 1)
        out["wrong-key-version.sealed"] = bytes(wrong)
        wrapped_at = version_at + 4 + 1 + len(o.slot.algorithm) + 2
        assert good[wrapped_at : wrapped_at + len(o.slot.wrapped)] == o.slot.wrapped
        out["key-slot-wrapped-key-flipped.sealed"] = _flip(good, wrapped_at + len(o.slot.wrapped) // 2)
        padding_at = wrapped_at + len(o.slot.wrapped) + 8
        assert good[padding_at] == 0
        assert padding_at < core.slot_offset(1) - fmt.SLOT_TAG_SIZE
        out["key-slot-padding-flipped.sealed"] = _flip(good, padding_at)
        out["chunk-byte-flipped.sealed"] = _flip(good, core.chunk_offset(2) + 100)

        forged = fmt.Core(
            core.chunk_size,
            core.plaintext_length,
            core.salt,
            core.nonce_prefix,
            hashlib.sha256(b"not the digest").digest(),
            core.digest_alg,
            core.slot_size,
        )
        assert forged.stream_id == core.stream_id  # the digest is outside the stream id
        forged_hdr = forged.encode() + fmt.encode_slot(o.slot, forged, o.header_key) + bytes(core.slot_size)
        out["digest-mismatch.sealed"] = forged_hdr + good[core.payload_offset :]
    assert set(out) == set(EXPECTED)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed fixture differs")
    args = ap.parse_args(argv)
    if not args.check:
        ensure_key(HERE / KEY_DIR)
    built = build()
    stale = [n for n, b in built.items() if not (HERE / n).is_file() or (HERE / n).read_bytes() != b]
    if args.check:
        for n in stale:
            sys.stderr.write(f"{n} differs from what the script builds\n")
        return 1 if stale else 0
    for n, b in built.items():
        (HERE / n).write_bytes(b)
    sys.stderr.write(f"wrote {len(built)} fixtures to {HERE} ({len(stale)} changed)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
