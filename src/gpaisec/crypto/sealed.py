"""The sealed-file format (version 1): pure encoding, key schedule and chunk encryption.

Nothing here talks to a key provider: functions take the 32-byte data key. The file layout,
documented in ``docs/sealed-format.md``::

    core (96 bytes, written once)  | slot 0 | slot 1 | chunk 0 | chunk 1 | ... | chunk n-1

* core: ``GPAISEAL``, format version, suite, digest algorithm, slot size, chunk size, plaintext
  length, 32-byte salt, 4-byte nonce prefix, plaintext digest.
* slots: two key slots (A/B) holding the wrapped data key (key id, key version, wrap algorithm),
  a generation number and an HMAC-SHA256 tag over core and slot. A rewrap writes the other slot,
  then wipes the old one, so a crash at any point leaves a slot that opens.
* chunk i: AES-256-GCM of plaintext bytes ``[i*chunk_size, (i+1)*chunk_size)`` with nonce
  ``nonce_prefix || u64be(i)`` and associated data ``stream_id || final_flag``, where ``stream_id``
  is SHA-256 of the core without its digest field. There is always at least one chunk (an empty
  file has one empty final chunk); an exact multiple of the chunk size has no empty tail chunk.

Key schedule: ``HKDF-SHA256(ikm=data_key, salt=salt, info="gpaisec sealed v1 keys")`` gives 64
bytes: the payload key (AES-256-GCM) and the header key (HMAC-SHA256 of slots).

Opening, step by step (each step's failure is an IntegrityError with its own message):
  1. parse the core (magic, version, suite, sizes within limits);
  2. the file size equals the size the core's plaintext length implies (truncation, extension);
  3. a slot's tag verifies under the header key derived from the unwrapped data key;
  4. every chunk's GCM tag verifies under its counter nonce and final flag before any of its
     plaintext leaves this module;
  5. after a whole-file read, the plaintext digest equals the core's digest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gpaisec.errors import InputError, IntegrityError

__all__ = [
    "CORE_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_SLOT_SIZE",
    "DIGEST_BLAKE3",
    "DIGEST_SHA256",
    "FORMAT_VERSION",
    "MAGIC",
    "TAG_SIZE",
    "ChunkCipher",
    "Core",
    "KeySlot",
    "SealedIntegrityError",
    "Sink",
    "decrypt_stream",
    "derive_keys",
    "encode_slot",
    "encrypt_stream",
    "new_core",
    "parse_core",
    "parse_slot",
    "verify_slot",
]

MAGIC: Final = b"GPAISEAL"
FORMAT_VERSION: Final = 1
SUITE_AES256GCM_HKDF_SHA256: Final = 1
DIGEST_BLAKE3: Final = 1
DIGEST_SHA256: Final = 2
DIGEST_NAMES: Final = {DIGEST_BLAKE3: "blake3", DIGEST_SHA256: "sha256"}
TAG_SIZE: Final = 16
SLOT_TAG_SIZE: Final = 32
MIN_CHUNK_SIZE: Final = 4096
MAX_CHUNK_SIZE: Final = 64 << 20
DEFAULT_CHUNK_SIZE: Final = 4 << 20
MIN_SLOT_SIZE: Final = 256
MAX_SLOT_SIZE: Final = 16384
DEFAULT_SLOT_SIZE: Final = 1024
_KEY_INFO: Final = b"gpaisec sealed v1 keys"
_SLOT_LABEL: Final = b"gpaisec sealed v1 slot"

# magic, version, suite, digest alg, slot size, reserved, chunk size, plaintext length, salt, prefix
_CORE_FIXED = struct.Struct(">8sHBBHHIQ32s4s")
CORE_SIZE: Final = _CORE_FIXED.size + 32
_SLOT_HEAD = struct.Struct(">IB")


class SealedIntegrityError(IntegrityError):
    """A sealed file failed a check: tampered, truncated, extended, spliced or the wrong key."""

    title = "sealed file does not verify"


@dataclass(frozen=True)
class Core:
    """The immutable part of the header."""

    chunk_size: int
    plaintext_length: int
    salt: bytes = field(repr=False)
    nonce_prefix: bytes = field(repr=False)
    digest: bytes = field(default=bytes(32), repr=False)
    digest_alg: int = DIGEST_BLAKE3
    slot_size: int = DEFAULT_SLOT_SIZE
    version: int = FORMAT_VERSION
    suite: int = SUITE_AES256GCM_HKDF_SHA256

    def fixed_bytes(self) -> bytes:
        return _CORE_FIXED.pack(
            MAGIC,
            self.version,
            self.suite,
            self.digest_alg,
            self.slot_size,
            0,
            self.chunk_size,
            self.plaintext_length,
            self.salt,
            self.nonce_prefix,
        )

    def encode(self) -> bytes:
        return self.fixed_bytes() + self.digest

    @property
    def stream_id(self) -> bytes:
        """SHA-256 of the core without its digest: bound into every chunk's associated data."""
        return hashlib.sha256(self.fixed_bytes()).digest()

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.plaintext_length // self.chunk_size))

    @property
    def payload_offset(self) -> int:
        return CORE_SIZE + 2 * self.slot_size

    @property
    def sealed_size(self) -> int:
        return self.payload_offset + self.plaintext_length + self.chunk_count * TAG_SIZE

    @property
    def digest_name(self) -> str:
        return DIGEST_NAMES[self.digest_alg]

    def chunk_length(self, i: int) -> int:
        if i == self.chunk_count - 1:
            return self.plaintext_length - i * self.chunk_size
        return self.chunk_size

    def chunk_offset(self, i: int) -> int:
        return self.payload_offset + i * (self.chunk_size + TAG_SIZE)

    def slot_offset(self, index: int) -> int:
        return CORE_SIZE + index * self.slot_size


@dataclass(frozen=True)
class KeySlot:
    """One key slot: the data key wrapped under ``key_id`` version ``key_version``."""

    generation: int
    key_id: str
    key_version: int
    algorithm: str
    wrapped: bytes = field(repr=False)


def new_core(
    plaintext_length: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    digest_alg: int = DIGEST_BLAKE3,
    slot_size: int = DEFAULT_SLOT_SIZE,
) -> Core:
    """A core with a fresh random salt and nonce prefix (the digest is filled in after sealing)."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InputError(f"chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    if digest_alg not in DIGEST_NAMES:
        raise InputError(f"unknown digest algorithm {digest_alg}")
    if not MIN_SLOT_SIZE <= slot_size <= MAX_SLOT_SIZE:
        raise InputError(f"slot size {slot_size} is outside {MIN_SLOT_SIZE}..{MAX_SLOT_SIZE}")
    if plaintext_length < 0:
        raise InputError("negative plaintext length")
    return Core(
        chunk_size,
        plaintext_length,
        os.urandom(32),
        os.urandom(4),
        digest_alg=digest_alg,
        slot_size=slot_size,
    )


def parse_core(data: bytes) -> Core:
    """Step 1: decode and sanity-check the core (no key needed)."""
    if len(data) < CORE_SIZE or not data.startswith(MAGIC):
        raise SealedIntegrityError("not a gpaisec sealed file (no GPAISEAL header)")
    magic, version, suite, dalg, slot_size, reserved, chunk_size, length, salt, prefix = (
        _CORE_FIXED.unpack_from(data)
    )
    if version != FORMAT_VERSION:
        raise SealedIntegrityError(
            f"sealed file format version {version} is not supported (this gpaisec reads {FORMAT_VERSION})",
            hint="upgrade gpaisec" if version > FORMAT_VERSION else None,
        )
    if suite != SUITE_AES256GCM_HKDF_SHA256 or dalg not in DIGEST_NAMES or reserved != 0:
        raise SealedIntegrityError(f"sealed file header names an unknown suite {suite} or digest {dalg}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or not MIN_SLOT_SIZE <= slot_size <= MAX_SLOT_SIZE:
        raise SealedIntegrityError("sealed file header has an impossible chunk or slot size")
    if length >= 1 << 62:
        raise SealedIntegrityError("sealed file header has an impossible plaintext length")
    digest = bytes(data[_CORE_FIXED.size : CORE_SIZE])
    return Core(chunk_size, length, salt, prefix, digest, dalg, slot_size, version, suite)


def derive_keys(data_key: bytes, core: Core) -> tuple[bytes, bytes]:
    """(payload key, header key) from the data key and the file's salt."""
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=core.salt, info=_KEY_INFO).derive(data_key)
    return okm[:32], okm[32:]


def _slot_tag(header_key: bytes, core: Core, body: bytes) -> bytes:
    return hmac.new(header_key, _SLOT_LABEL + core.encode() + body, hashlib.sha256).digest()


def encode_slot(slot: KeySlot, core: Core, header_key: bytes) -> bytes:
    """The slot's bytes (exactly ``core.slot_size``), tagged under ``header_key``."""
    kid = slot.key_id.encode("utf-8")
    alg = slot.algorithm.encode("ascii")
    body = (
        _SLOT_HEAD.pack(slot.generation, len(kid))
        + kid
        + struct.pack(">IB", slot.key_version, len(alg))
        + alg
        + struct.pack(">H", len(slot.wrapped))
        + slot.wrapped
    )
    room = core.slot_size - SLOT_TAG_SIZE
    if len(kid) > 255 or len(alg) > 255 or len(body) > room:
        raise InputError(
            f"the wrapped key ({len(slot.wrapped)} bytes) does not fit a {core.slot_size}-byte key slot",
            hint="seal with a larger slot size",
        )
    body += bytes(room - len(body))
    return body + _slot_tag(header_key, core, body)


def parse_slot(data: bytes) -> KeySlot | None:
    """Decode a slot without verifying it; None for an empty (wiped) slot or unparseable bytes."""
    try:
        generation, klen = _SLOT_HEAD.unpack_from(data)
        if generation == 0:
            return None
        pos = _SLOT_HEAD.size
        key_id = data[pos : pos + klen].decode("utf-8")
        pos += klen
        version, alen = struct.unpack_from(">IB", data, pos)
        pos += 5
        alg = data[pos : pos + alen].decode("ascii")
        pos += alen
        (wlen,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + wlen > len(data) - SLOT_TAG_SIZE:
            return None
        return KeySlot(generation, key_id, version, alg, bytes(data[pos : pos + wlen]))
    except (struct.error, UnicodeDecodeError):
        return None


def verify_slot(data: bytes, core: Core, header_key: bytes) -> None:
    """Step 3: the slot's tag must verify (it also authenticates the core and its digest)."""
    body, tag = data[:-SLOT_TAG_SIZE], data[-SLOT_TAG_SIZE:]
    if not hmac.compare_digest(_slot_tag(header_key, core, bytes(body)), bytes(tag)):
        raise SealedIntegrityError("the key slot's tag does not verify (header tampered or wrong data key)")


def new_hasher(digest_alg: int) -> Hasher:
    if digest_alg == DIGEST_BLAKE3:
        return blake3.blake3()  # type: ignore[no-any-return,unused-ignore]
    return hashlib.sha256()


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...
    def digest(self) -> bytes: ...


class Sink(Protocol):
    def __call__(self, data: memoryview, /) -> None: ...


class ChunkCipher:
    """AES-256-GCM over one file's chunks; decrypts only authenticated plaintext."""

    def __init__(self, core: Core, payload_key: bytes) -> None:
        self.core = core
        self._aes = AESGCM(payload_key)
        self._sid = core.stream_id

    def nonce(self, i: int) -> bytes:
        return self.core.nonce_prefix + i.to_bytes(8, "big")

    def aad(self, i: int) -> bytes:
        return self._sid + (b"\x01" if i == self.core.chunk_count - 1 else b"\x00")

    def encrypt_into(self, i: int, plaintext: memoryview, out: memoryview) -> None:
        self._aes.encrypt_into(self.nonce(i), plaintext, self.aad(i), out)

    def decrypt_into(self, i: int, ciphertext: memoryview, out: memoryview) -> None:
        """Step 4. On failure ``out`` is wiped (OpenSSL writes plaintext before it checks the tag)."""
        try:
            self._aes.decrypt_into(self.nonce(i), ciphertext, self.aad(i), out)
        except InvalidTag:
            out[:] = bytes(len(out))
            raise self._refused(i) from None

    def decrypt(self, i: int, ciphertext: bytes | bytearray | memoryview) -> bytes:
        try:
            return self._aes.decrypt(self.nonce(i), ciphertext, self.aad(i))
        except InvalidTag:
            raise self._refused(i) from None

    def _refused(self, i: int) -> SealedIntegrityError:
        return SealedIntegrityError(
            f"chunk {i} of {self.core.chunk_count} does not verify (tampered, moved or cut)"
        )


def read_exact_at(fd: int, buf: memoryview, offset: int) -> None:
    got = 0
    while got < len(buf):
        n = os.preadv(fd, [buf[got:]], offset + got)
        if n == 0:
            raise SealedIntegrityError(f"unexpected end of file at offset {offset + got}")
        got += n


def write_exact_at(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


def default_workers() -> int:
    return max(
        1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    )


def _run_pipeline(
    count: int,
    workers: int,
    slots: int,
    parallel: Callable[[int, int], None],
    ordered: Callable[[int, int], None],
) -> None:
    """Run ``parallel(i, slot)`` for chunks 0..count-1 and ``ordered(i, slot)`` strictly in order, each
    after its chunk's ``parallel``, on ``workers`` threads (this one included).

    Why this shape (measured, see docs/sealed-format.md): per byte, the digest costs about as much
    as AES-GCM and must run in order, one chunk at a time. A pool plus a hashing thread puts more
    runnable threads than cores on the machine, and the in-order digest, which bounds throughput,
    gets only a fair share of a core. Here there are exactly ``workers`` threads, all alike: each
    takes the ordered work (digest, sink) for the next chunk when it is ready and no other thread
    holds it, and otherwise the next chunk's parallel work (read, AES-GCM), so no core idles while
    there is work. ``ordered`` is called once at a time, in order, from any of these threads.

    A slot (one chunk's buffers) is reused only after ``ordered`` has run for the chunk it held:
    memory is ``slots`` chunks whatever the file size. Failures are raised in chunk order: when
    ``parallel`` fails for chunk i, no new chunk is started, ``ordered`` still runs for every chunk
    before i, and then chunk i's exception is raised here (so the error names the first bad chunk,
    whatever the timing). An exception from ``ordered`` stops everything and is raised here. Either
    way every thread has finished when this returns or raises.
    """
    if workers <= 1 or count == 1:
        for i in range(count):
            parallel(i, 0)
            ordered(i, 0)
        return
    cond = threading.Condition(threading.Lock())
    free = list(range(slots - 1, -1, -1))
    slot_of: dict[int, int] = {}
    finished: set[int] = set()
    errors: dict[int, BaseException] = {}
    fatal: list[BaseException] = []
    stop = False  # start no new chunk: one failed, or the pipeline is giving up
    claimed = 0  # chunks 0..claimed-1 have a slot and their parallel work started
    done = 0  # chunks 0..done-1 have had their ordered work
    ordering = False  # a thread is running the ordered work of chunk ``done``

    def loop() -> None:
        nonlocal stop, claimed, done, ordering
        while True:
            with cond:
                # The next chunk in order is always claimed when a thread waits here, so some thread
                # finishes it and notifies: the pipeline cannot stall.
                while True:
                    if fatal or done >= count:
                        return
                    if not ordering and done in finished:
                        j = done
                        finished.discard(j)
                        s = slot_of.pop(j)
                        if j in errors:
                            fatal.append(errors.pop(j))
                            stop = True
                            cond.notify_all()
                            return
                        ordering, task = True, ordered
                        break
                    if not stop and claimed < count and free:
                        j, s = claimed, free.pop()
                        claimed += 1
                        slot_of[j] = s
                        task = parallel
                        break
                    cond.wait()
            try:
                task(j, s)
            except BaseException as exc:
                with cond:
                    if task is parallel:
                        errors[j] = exc  # raised when the ordered work reaches chunk j
                        finished.add(j)
                    else:
                        fatal.append(exc)
                    stop = True
                    cond.notify_all()
                if task is parallel:
                    continue
                return
            with cond:
                if task is parallel:
                    finished.add(j)
                else:
                    free.append(s)
                    done += 1
                    ordering = False
                cond.notify_all()

    threads = [threading.Thread(target=loop, name=f"gpaiseal-{k}", daemon=True) for k in range(workers - 1)]
    for t in threads:
        t.start()
    try:
        loop()
    except BaseException as exc:  # KeyboardInterrupt in this thread: stop the others
        with cond:
            stop = True
            fatal.append(exc)
            cond.notify_all()
        raise
    finally:
        for t in threads:
            t.join()
    if fatal:
        raise fatal[0]


def _buffers(core: Core, workers: int) -> list[tuple[bytearray, bytearray]]:
    n = 1 if workers <= 1 else min(core.chunk_count, 2 * workers)
    size = min(core.chunk_size, max(core.plaintext_length, 1))
    return [(bytearray(size), bytearray(size + TAG_SIZE)) for _ in range(n)]


def _wipe(bufs: list[tuple[bytearray, bytearray]]) -> None:
    for pt_buf, _ in bufs:
        pt_buf[:] = bytes(len(pt_buf))


def encrypt_stream(
    src_fd: int,
    dst_fd: int,
    core: Core,
    payload_key: bytes,
    *,
    src_offset: int = 0,
    dst_offset: int = 0,
    workers: int | None = None,
) -> Core:
    """Encrypt ``core.plaintext_length`` bytes of ``src_fd`` into the payload area of seekable ``dst_fd``.

    Returns the core with its digest filled in. The caller writes core and slots afterwards.
    Chunks are read, encrypted and written (``pread``/``pwrite``, reused buffers) in parallel;
    the digest of the plaintext is computed in order alongside (:func:`_run_pipeline`).
    """
    workers = default_workers() if workers is None else workers
    cipher = ChunkCipher(core, payload_key)
    bufs = _buffers(core, workers)
    hasher = new_hasher(core.digest_alg)

    def parallel(i: int, s: int) -> None:
        ln = core.chunk_length(i)
        pt, ct = memoryview(bufs[s][0])[:ln], memoryview(bufs[s][1])[: ln + TAG_SIZE]
        try:
            read_exact_at(src_fd, pt, src_offset + i * core.chunk_size)
        except SealedIntegrityError:
            raise InputError(
                "the file being sealed shrank while it was read", hint="seal it when nothing writes it"
            ) from None
        cipher.encrypt_into(i, pt, ct)
        write_exact_at(dst_fd, ct, dst_offset + core.chunk_offset(i))

    def ordered(i: int, s: int) -> None:
        hasher.update(memoryview(bufs[s][0])[: core.chunk_length(i)])

    try:
        _run_pipeline(core.chunk_count, workers, len(bufs), parallel, ordered)
    finally:
        _wipe(bufs)
    return replace(core, digest=hasher.digest())


def decrypt_stream(
    src_fd: int,
    core: Core,
    payload_key: bytes,
    sink: Sink,
    *,
    first: int = 0,
    count: int | None = None,
    workers: int | None = None,
    src_offset: int = 0,
) -> bytes | None:
    """Decrypt chunks ``first..first+count`` of ``src_fd`` and hand each to ``sink`` in order.

    Only authenticated chunks reach ``sink``, in order and one call at a time (from any of the
    pipeline's threads; a sink must not rely on being called from this thread). For a whole-file read
    (the default) the plaintext digest is checked at the end (step 5) and SealedIntegrityError
    raised on a mismatch; the digest is returned for partial reads as None.
    """
    workers = default_workers() if workers is None else workers
    whole = first == 0 and count is None
    count = core.chunk_count - first if count is None else count
    cipher = ChunkCipher(core, payload_key)
    bufs = _buffers(core, workers)
    hasher = new_hasher(core.digest_alg) if whole else None

    def parallel(k: int, s: int) -> None:
        i = first + k
        ln = core.chunk_length(i)
        ct, pt = memoryview(bufs[s][1])[: ln + TAG_SIZE], memoryview(bufs[s][0])[:ln]
        read_exact_at(src_fd, ct, src_offset + core.chunk_offset(i))
        cipher.decrypt_into(i, ct, pt)

    def ordered(k: int, s: int) -> None:
        pt = memoryview(bufs[s][0])[: core.chunk_length(first + k)]
        if hasher is not None:
            hasher.update(pt)
        sink(pt)

    try:
        _run_pipeline(count, workers, len(bufs), parallel, ordered)
    finally:
        _wipe(bufs)
    if hasher is None:
        return None
    digest = hasher.digest()
    if not hmac.compare_digest(digest, core.digest):
        raise SealedIntegrityError(f"the plaintext's {core.digest_name} digest does not match the header")
    return digest


def iter_chunks(src_fd: int, core: Core, payload_key: bytes) -> Iterator[bytes]:
    """Decrypt chunk by chunk (one thread); the last step checks the digest."""
    cipher = ChunkCipher(core, payload_key)
    hasher = new_hasher(core.digest_alg)
    for i in range(core.chunk_count):
        ln = core.chunk_length(i)
        ct = bytearray(ln + TAG_SIZE)
        read_exact_at(src_fd, memoryview(ct), core.chunk_offset(i))
        pt = cipher.decrypt(i, ct)
        hasher.update(pt)
        if i == core.chunk_count - 1 and not hmac.compare_digest(hasher.digest(), core.digest):
            raise SealedIntegrityError(f"the plaintext's {core.digest_name} digest does not match the header")
        yield pt
