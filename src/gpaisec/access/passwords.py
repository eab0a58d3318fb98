"""Passwords: the policy a new password must meet, the blocklist, and argon2id hashing.

Follows NIST SP 800-63B-4 (section 3.1.1): at least 15 characters when the password is the only
factor (8 is the floor, for a password that is one factor of several); at least 64 allowed; every
Unicode character allowed, spaces included, counted in code points; no composition rules; no forced
periodic change; every new password compared with a blocklist of common and breached passwords,
with words tied to the account, and with repetitive or sequential strings.

Setting a password::

    from gpaisec.access.passwords import PasswordContext, PasswordPolicy, check_password, hash_password

    context = PasswordContext(user_name="alice", person_name="Alice Smith", organisation="Example AI")
    check_password(candidate, policy=PasswordPolicy(), context=context)  # raises WeakPasswordError
    stored = hash_password(candidate)

Signing in (after :meth:`gpaisec.access.ratelimit.Throttle.check`)::

    if account is None:
        verify_dummy(candidate)                        # the same work, then WrongPasswordError
    verify_password(account.password_hash, candidate)  # WrongPasswordError on a mismatch
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(candidate)

Every password is normalised to Unicode NFC before it is measured, compared or hashed, so the same
characters typed on different systems give the same hash.
"""

from __future__ import annotations

import enum
import functools
import gzip
import hashlib
import json
import logging
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import NoReturn

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION

from gpaisec.errors import ConfigError, GpaisecError, InputError, IntegrityError

__all__ = [
    "DEFAULT_HASH_PARAMS",
    "DEFAULT_MAX_LENGTH",
    "MAX_LENGTH_LIMIT",
    "MIN_LENGTH_FLOOR",
    "MIN_LENGTH_SINGLE_FACTOR",
    "BlocklistInfo",
    "HashParams",
    "PasswordContext",
    "PasswordPolicy",
    "WeakPasswordError",
    "WeakReason",
    "WrongPasswordError",
    "blocklist",
    "blocklist_info",
    "check_password",
    "hash_password",
    "is_blocklisted",
    "needs_rehash",
    "normalise",
    "verify_dummy",
    "verify_password",
]

_log = logging.getLogger(__name__)

MIN_LENGTH_SINGLE_FACTOR = 15
"""NIST SP 800-63B-4: the minimum when the password is the only authentication factor (the default)."""
MIN_LENGTH_FLOOR = 8
"""NIST SP 800-63B-4: the minimum when the password is one factor of several; no policy goes lower."""
DEFAULT_MAX_LENGTH = 128
MAX_LENGTH_LIMIT = 1024
"""No policy allows more, and nothing longer is hashed: bounds the work one request can cause."""
_MIN_MAX_LENGTH = 64  # NIST: verifiers SHOULD permit at least 64 characters.

_SERVICE_NAME = "gpaisec"
_MIN_CONTEXT_WORD = 3  # shorter user-name or name parts would match by accident
_UNUSABLE_CATEGORIES = frozenset({"Cc", "Cs", "Cn"})  # control, surrogate, unassigned
_KEYBOARD_ROWS = ("`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./")


def normalise(password: str) -> str:
    """The form every password is measured, compared and hashed in: Unicode NFC."""
    return unicodedata.normalize("NFC", password)


# --- errors -------------------------------------------------------------------------------------


class WeakReason(enum.StrEnum):
    """Why :func:`check_password` refused a password (stable codes, for the API)."""

    TOO_SHORT = "too-short"
    TOO_LONG = "too-long"
    UNUSABLE_CHARACTER = "unusable-character"
    BLOCKLISTED = "blocklisted"
    CONTEXT = "context"
    REPETITIVE = "repetitive"


class WeakPasswordError(InputError):
    """A new password does not meet the policy. The message says why; it never contains the password."""

    title = "password not accepted"

    def __init__(self, message: str, *, reason: WeakReason, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class WrongPasswordError(GpaisecError):
    """Sign-in failed. The same error, after the same work, whether or not the account exists."""

    exit_code = 1
    title = "sign-in failed"

    def __init__(self) -> None:
        super().__init__(
            "the user name or password is wrong",
            hint="check both and try again; each further failure makes the wait before the next try longer",
        )


# --- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """What a new password must meet. Composition rules and expiry are deliberately absent.

    ``min_length`` is 15 (NIST's minimum for a password used alone); 8 is allowed only where the
    password is one factor of several, and nothing lower is accepted. ``max_length`` is at least 64
    and at most :data:`MAX_LENGTH_LIMIT`. Lengths count Unicode code points after NFC.
    """

    min_length: int = MIN_LENGTH_SINGLE_FACTOR
    max_length: int = DEFAULT_MAX_LENGTH

    def __post_init__(self) -> None:
        for name in ("min_length", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"password policy {name} must be a whole number, not {value!r}")
        if self.min_length < MIN_LENGTH_FLOOR:
            raise InputError(
                f"a password policy cannot require fewer than {MIN_LENGTH_FLOOR} characters"
                f" (asked for {self.min_length})",
                hint=f"NIST SP 800-63B-4 allows {MIN_LENGTH_FLOOR} only with a second factor;"
                f" use {MIN_LENGTH_SINGLE_FACTOR} when the password is used alone",
            )
        if self.max_length < max(_MIN_MAX_LENGTH, self.min_length):
            raise InputError(
                f"a password policy must allow at least {max(_MIN_MAX_LENGTH, self.min_length)} characters"
                f" (max_length is {self.max_length})",
                hint=f"NIST SP 800-63B-4 asks for at least {_MIN_MAX_LENGTH}, so that passphrases fit",
            )
        if self.max_length > MAX_LENGTH_LIMIT:
            raise InputError(
                f"a password policy cannot allow more than {MAX_LENGTH_LIMIT} characters"
                f" (max_length is {self.max_length})",
                hint="the limit bounds the hashing work one request can cause",
            )


@dataclass(frozen=True, slots=True)
class PasswordContext:
    """Words tied to the account, which a password must not consist of.

    The service's own name ("gpaisec") is always included. Each value counts whole and split into
    parts at anything that is not a letter or digit ("alice.smith@example.ai" gives "alice", "smith",
    "example"); parts shorter than three characters are ignored.
    """

    user_name: str = ""
    person_name: str = ""
    organisation: str = ""
    other: tuple[str, ...] = field(default=())

    def words(self) -> tuple[tuple[str, str], ...]:
        """(folded word, what it is) pairs, for the check and its message."""
        sources: list[tuple[str, str]] = [
            (self.user_name, "your user name"),
            (self.person_name, "your name"),
            (self.organisation, "your organisation's name"),
            *((value, "a word tied to this account") for value in self.other),
            (_SERVICE_NAME, "the name of this service"),
        ]
        seen: set[str] = set()
        out: list[tuple[str, str]] = []
        for value, what in sources:
            for word in _context_words(value):
                if word not in seen:
                    seen.add(word)
                    out.append((word, what))
        return tuple(out)


def _fold_alnum(text: str) -> str:
    return "".join(c for c in normalise(text).casefold() if c.isalnum())


def _context_words(value: str) -> Iterator[str]:
    whole = _fold_alnum(value)
    parts = [_fold_alnum(p) for p in re.split(r"[\W_]+", value)]
    for word in (whole, *parts):
        if len(word) >= _MIN_CONTEXT_WORD:
            yield word
            yield word[::-1]


# --- the check ----------------------------------------------------------------------------------

_HINT_CHOOSE = "choose a passphrase of several unrelated words, or let a password manager generate a password"


def check_password(candidate: str, *, policy: PasswordPolicy, context: PasswordContext) -> None:
    """Accept ``candidate`` as a new password or raise :class:`WeakPasswordError` saying why.

    The checks, in order; the first that fails decides the message:

    1. Length: at least ``policy.min_length`` and at most ``policy.max_length`` code points (NFC).
    2. Characters: no control characters, surrogates or code points Unicode has not assigned
       (their normalisation could change with a later Unicode version, and the hash with it).
    3. Blocklist: not a common or breached password, ignoring case and surrounding whitespace.
    4. Context: not made (half or more of its letters and digits) of the user name, the person's
       name, the organisation or the service's name, forwards or reversed.
    5. Repetition: not made (half or more of its characters) of repeats or sequences such as
       "aaaa", "1234", "dcba", "qwerty" or a substring seen earlier in it.
    """
    password = normalise(candidate)

    # Step 1: length, in code points.
    if len(password) < policy.min_length:
        raise WeakPasswordError(
            f"the password is shorter than {policy.min_length} characters",
            reason=WeakReason.TOO_SHORT,
            hint=f"use at least {policy.min_length} characters; spaces and any letters are fine",
        )
    if len(password) > policy.max_length:
        raise WeakPasswordError(
            f"the password is longer than {policy.max_length} characters",
            reason=WeakReason.TOO_LONG,
            hint=f"use at most {policy.max_length} characters",
        )

    # Step 2: characters that can be stored and normalised stably.
    for position, char in enumerate(password, start=1):
        if unicodedata.category(char) in _UNUSABLE_CATEGORIES:
            raise WeakPasswordError(
                f"character {position} of the password cannot be used"
                " (a control character, a lone surrogate or a code point Unicode has not assigned)",
                reason=WeakReason.UNUSABLE_CHARACTER,
                hint="use letters, digits, spaces, punctuation or symbols",
            )

    # Step 3: the blocklist.
    if is_blocklisted(password):
        raise WeakPasswordError(
            "the password is on the list of common and breached passwords",
            reason=WeakReason.BLOCKLISTED,
            hint=_HINT_CHOOSE,
        )

    # Step 4: words tied to the account.
    found = _dominant_context(password, context)
    if found:
        raise WeakPasswordError(
            f"the password is mostly {_join(found)}",
            reason=WeakReason.CONTEXT,
            hint="add unrelated words rather than names; " + _HINT_CHOOSE,
        )

    # Step 5: repeated and sequential characters.
    if _mostly_trivial(password):
        raise WeakPasswordError(
            "the password is mostly repeated or sequential characters (like 'aaaa', '1234' or 'abcabc')",
            reason=WeakReason.REPETITIVE,
            hint=_HINT_CHOOSE,
        )


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _dominant_context(password: str, context: PasswordContext) -> list[str]:
    """What the context words that cover half or more of the password's letters and digits are."""
    folded = _fold_alnum(password)
    if not folded:
        return []
    covered = bytearray(len(folded))
    kinds: list[str] = []
    for word, what in context.words():
        start = folded.find(word)
        if start < 0:
            continue
        if what not in kinds:
            kinds.append(what)
        while start >= 0:
            covered[start : start + len(word)] = b"\x01" * len(word)
            start = folded.find(word, start + 1)
    return kinds if 2 * sum(covered) >= len(folded) else []


@functools.cache
def _keyboard_neighbours() -> frozenset[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for row in _KEYBOARD_ROWS:
        for a, b in zip(row, row[1:], strict=False):
            pairs.update({(a, b), (b, a)})
    return frozenset(pairs)


def _predictable_step(a: str, b: str) -> bool:
    """b repeats a, or follows it in code points, on the digit wheel, or on a keyboard row."""
    if abs(ord(a) - ord(b)) <= 1:
        return True
    return {a, b} == {"9", "0"} or (a, b) in _keyboard_neighbours()


def _mostly_trivial(password: str) -> bool:
    """Half or more of the characters repeat an earlier substring or continue a sequence."""
    s = password.casefold()
    n = len(s)
    trivial = bytearray(n)
    # Characters that continue a step from the one before them ("aaaa", "1234", "qwer").
    for i in range(1, n):
        if _predictable_step(s[i - 1], s[i]):
            trivial[i] = 1
    # Substrings of three or more that already occurred (overlap allowed: "abcabcabc").
    i = 1
    while i <= n - 3:
        length = 0
        while i + length < n and s.find(s[i : i + length + 1], 0, i + length) >= 0:
            length += 1
        if length >= 3:
            trivial[i : i + length] = b"\x01" * length
            i += length
        else:
            i += 1
    return 2 * sum(trivial) >= n


# --- the blocklist ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlocklistInfo:
    """What the shipped blocklist is: size, digests and sources (from ``data/blocklist.json``)."""

    count: int
    sha256: str
    text_sha256: str
    sources: tuple[str, ...]
    load_seconds: float


_blocklist_lock = threading.Lock()
_blocklist_cache: tuple[frozenset[str], BlocklistInfo] | None = None


def _load_blocklist() -> tuple[frozenset[str], BlocklistInfo]:
    global _blocklist_cache
    if _blocklist_cache is not None:
        return _blocklist_cache
    with _blocklist_lock:
        if _blocklist_cache is None:
            _blocklist_cache = _read_blocklist()
        return _blocklist_cache


def _read_blocklist() -> tuple[frozenset[str], BlocklistInfo]:
    # 1. Read the description and the file it describes.
    started = time.perf_counter()
    data = resources.files("gpaisec.access").joinpath("data")
    try:
        meta = json.loads(data.joinpath("blocklist.json").read_text(encoding="utf-8"))
        raw = data.joinpath(meta["file"]).read_bytes()
        count, sha256, text_sha256 = int(meta["count"]), str(meta["sha256"]), str(meta["text_sha256"])
        sources = tuple(str(s["name"]) for s in meta["sources"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the password blocklist that ships with gpaisec cannot be read: {exc}",
            hint="reinstall gpaisec; a source checkout can rebuild it with scripts/make_blocklist.py",
        ) from exc
    # 2. The file must be the one described, or checks would silently pass weak passwords.
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise IntegrityError(
            "the password blocklist does not match its recorded SHA-256",
            hint="reinstall gpaisec; a source checkout can rebuild it with scripts/make_blocklist.py",
        )
    # 3. Decode into a set; the count must match too.
    entries = frozenset(gzip.decompress(raw).decode("utf-8").splitlines())
    if len(entries) != count:
        raise IntegrityError(
            f"the password blocklist has {len(entries)} entries where {count} are recorded",
            hint="reinstall gpaisec; a source checkout can rebuild it with scripts/make_blocklist.py",
        )
    info = BlocklistInfo(count, sha256, text_sha256, sources, time.perf_counter() - started)
    return entries, info


def blocklist() -> frozenset[str]:
    """The blocklist entries (NFC, stripped, lower-case), loaded and verified on first use."""
    return _load_blocklist()[0]


def blocklist_info() -> BlocklistInfo:
    """Size, digests, sources and load time of the blocklist (loads it if needed)."""
    return _load_blocklist()[1]


def is_blocklisted(candidate: str) -> bool:
    """Whether the candidate, ignoring case and surrounding whitespace, is a blocklist entry."""
    entries = blocklist()
    folded = normalise(candidate).lower()
    return folded in entries or folded.strip() in entries


# --- hashing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HashParams:
    """argon2id parameters. The default is RFC 9106's second recommendation (64 MiB, 3 passes).

    Parameters weaker than OWASP's argon2id minimum (19 MiB, 2 passes) are refused unless
    ``unsafe=True``, which logs a warning and exists for tests only (see :meth:`unsafe_fast`).
    Every hash records its parameters, so hashes made with other parameters still verify;
    :func:`needs_rehash` finds them.
    """

    time_cost: int = 3
    memory_cost: int = 65536  # KiB
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16
    unsafe: bool = False

    def __post_init__(self) -> None:
        for name in ("time_cost", "memory_cost", "parallelism", "hash_len", "salt_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"argon2 {name} must be a positive whole number, not {value!r}")
        if self.memory_cost < 8 * self.parallelism:
            raise InputError(
                f"argon2 memory_cost must be at least 8 KiB per lane ({8 * self.parallelism} KiB)"
            )
        if self.unsafe:
            _log.warning("argon2 parameters marked unsafe are in use: %s; never use them in production", self)
            return
        weak = [
            f"{name} {value} < {floor}"
            for name, value, floor in (
                ("memory_cost", self.memory_cost, 19456),
                ("time_cost", self.time_cost, 2),
                ("hash_len", self.hash_len, 16),
                ("salt_len", self.salt_len, 16),
            )
            if value < floor
        ]
        if weak:
            raise InputError(
                f"argon2 parameters too weak for password storage: {', '.join(weak)}",
                hint="keep the defaults (RFC 9106: 64 MiB, 3 passes, 4 lanes)",
            )

    @classmethod
    def unsafe_fast(cls) -> HashParams:
        """Tiny parameters that make tests fast. Logs a warning; never use them for real passwords."""
        return cls(time_cost=1, memory_cost=8, parallelism=1, unsafe=True)

    def as_argon2(self) -> argon2.Parameters:
        return argon2.Parameters(
            type=argon2.Type.ID,
            version=ARGON2_VERSION,
            salt_len=self.salt_len,
            hash_len=self.hash_len,
            time_cost=self.time_cost,
            memory_cost=self.memory_cost,
            parallelism=self.parallelism,
        )


DEFAULT_HASH_PARAMS = HashParams()

# A hash of a random secret nobody kept, made once with DEFAULT_HASH_PARAMS, so that the first
# sign-in for an unknown account costs no more than any other. tests check the parameters match.
_DEFAULT_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$vKrhcw8q3YzYo2w4rD1jcg$f2ohkbKLB223LV2ijAI9GA2o+vVYGdikNwvzpRfmwm4"
)


@functools.cache
def _hasher(params: HashParams) -> argon2.PasswordHasher:
    return argon2.PasswordHasher.from_parameters(params.as_argon2())


@functools.cache
def _dummy_hash(params: HashParams) -> str:
    if params == DEFAULT_HASH_PARAMS:
        return _DEFAULT_DUMMY_HASH
    return _hasher(params).hash(secrets.token_bytes(32))


def _encode(password: str) -> bytes | None:
    """NFC, UTF-8; None for what can never have been hashed (too long, lone surrogates)."""
    if len(password) > MAX_LENGTH_LIMIT:
        return None
    try:
        return normalise(password).encode("utf-8")
    except UnicodeEncodeError:
        return None


def hash_password(password: str, *, params: HashParams = DEFAULT_HASH_PARAMS) -> str:
    """The argon2id hash of the NFC form of ``password``, in PHC string form with its parameters.

    It does not judge the password: call :func:`check_password` first when the password is new.
    """
    encoded = _encode(password)
    if encoded is None:
        raise InputError(
            f"cannot hash this password: longer than {MAX_LENGTH_LIMIT} characters or not valid text",
            hint="check it with check_password first",
        )
    return _hasher(params).hash(encoded)


def _verify(stored_hash: str, candidate: str) -> None:
    encoded = _encode(candidate)
    if encoded is None:
        raise WrongPasswordError()
    try:
        # argon2's own check compares the digests in constant time.
        _hasher(DEFAULT_HASH_PARAMS).verify(stored_hash, encoded)
    except VerifyMismatchError:
        raise WrongPasswordError() from None
    except (InvalidHashError, VerificationError, UnicodeEncodeError) as exc:
        # Not a mismatch: the stored hash cannot be decoded or used ("Decoding failed", ...).
        raise IntegrityError(
            f"a stored password hash cannot be verified: {exc or 'not an argon2 hash'}",
            hint="the account's password must be reset; check how the hash was stored",
        ) from exc


def verify_password(stored_hash: str, candidate: str) -> None:
    """Return if ``candidate`` matches ``stored_hash``; raise :class:`WrongPasswordError` if not.

    A malformed ``stored_hash`` raises :class:`~gpaisec.errors.IntegrityError`. The parameters are
    read from the hash itself.
    """
    _verify(stored_hash, candidate)


def verify_dummy(candidate: str, *, params: HashParams = DEFAULT_HASH_PARAMS) -> NoReturn:
    """Do the work of :func:`verify_password` for an account that does not exist, then fail.

    Always raises :class:`WrongPasswordError`, so a sign-in for an unknown user name takes as long
    and ends the same way as one with a wrong password. ``params`` should be the parameters the
    real hashes were made with.
    """
    _verify(_dummy_hash(params), candidate)
    raise WrongPasswordError()


def needs_rehash(stored_hash: str, *, params: HashParams = DEFAULT_HASH_PARAMS) -> bool:
    """Whether ``stored_hash`` was made with other parameters (rehash it after the next sign-in)."""
    try:
        return _hasher(params).check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError) as exc:
        raise IntegrityError(
            "a stored password hash is not a valid argon2 hash",
            hint="the account's password must be reset; check how the hash was stored",
        ) from exc
