"""Throttling of failed sign-ins, per account and per source address, checked before any password work.

NIST SP 800-63B-4 requires verifiers to rate-limit failed attempts. Two counters apply to every
attempt: one for the account name as typed and one for the source address. Each allows a few free
failures, then makes the next attempt wait, doubling the wait with each failure up to a cap; after
more failures the counter locks for a lockout window. A counter forgives one failure per quiet
interval, so occasional typos never add up. A successful sign-in clears the account's counter but
not the source's, so one known password does not reset a spraying source.

::

    throttle = Throttle(store, key_secret=settings.throttle_key)
    throttle.check(account, source)               # ThrottledError, before the password is looked at
    try:
        verify_password(stored_hash, candidate)   # or verify_dummy for an unknown account
    except WrongPasswordError:
        throttle.record_failure(account, source)
        raise
    throttle.record_success(account, source)

The throttle never learns whether an account exists: callers record failures for unknown account
names exactly as for known ones, and every refusal carries the same message.

Keys are HMAC-SHA256 digests of the normalised account name and source, under ``key_secret``: the
store never holds user names (people type passwords into the user-name field) or addresses. Every
process sharing a store must use the same ``key_secret``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gpaisec.errors import GpaisecError, InputError

__all__ = [
    "ACCOUNT_POLICY",
    "MAX_LOCKOUT_AFTER",
    "SOURCE_POLICY",
    "AttemptRecord",
    "AttemptStore",
    "BackoffPolicy",
    "Clock",
    "MemoryAttemptStore",
    "ThrottledError",
    "Throttle",
]

MAX_LOCKOUT_AFTER = 100
"""NIST SP 800-63B-4: at most 100 consecutive failures before the lockout."""

Clock = Callable[[], float]
"""Seconds since the epoch (wall clock: a store shared by several hosts needs a shared time base)."""


class ThrottledError(GpaisecError):
    """Too many recent failures for this account or source; nothing was checked.

    ``retry_after`` is the number of whole seconds to wait (an HTTP API sends it as Retry-After with
    status 429). Exit code 6, "denied by policy", as for other policy refusals.
    """

    exit_code = 6
    title = "too many attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed sign-in attempts",
            hint=f"wait {_humanise(retry_after)} before trying again",
        )
        self.retry_after = retry_after


def _humanise(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 2 * 3600:
        return f"{math.ceil(seconds / 60)} minutes"
    return f"{math.ceil(seconds / 3600)} hours"


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How one counter (per account, or per source) turns failures into waits.

    With ``n`` failures counted, the next attempt may come ``wait(n)`` seconds after the last failure:

    - nothing while ``n < free_attempts``;
    - ``base_delay * 2 ** (n - free_attempts)``, at most ``max_delay``, while ``n < lockout_after``;
    - ``lockout_seconds`` (the lockout window) from ``lockout_after`` on; each further failure
      starts the window again.

    The count drops by one for every ``forgive_every`` seconds since the last failure.
    """

    free_attempts: int
    base_delay: float
    max_delay: float
    lockout_after: int
    lockout_seconds: float
    forgive_every: float

    def __post_init__(self) -> None:
        for name in ("free_attempts", "lockout_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"{name} must be a whole number, not {value!r}")
        if self.free_attempts < 0:
            raise InputError(f"free_attempts must be 0 or more, not {self.free_attempts}")
        if self.lockout_after > MAX_LOCKOUT_AFTER:
            raise InputError(
                f"lockout_after ({self.lockout_after}) must be at most {MAX_LOCKOUT_AFTER}",
                hint="NIST SP 800-63B-4 limits consecutive failed attempts to no more than 100",
            )
        if self.lockout_after <= self.free_attempts:
            raise InputError(
                f"lockout_after ({self.lockout_after}) must be more than free_attempts ({self.free_attempts})"
            )
        for name in ("base_delay", "max_delay", "lockout_seconds", "forgive_every"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(f"{name} must be a positive number of seconds, not {value!r}")
        if not self.base_delay <= self.max_delay <= self.lockout_seconds:
            raise InputError(
                "delays must grow: base_delay <= max_delay <= lockout_seconds"
                f" ({self.base_delay}, {self.max_delay}, {self.lockout_seconds})"
            )

    def wait(self, failures: int) -> float:
        """Seconds after the last failure before the next attempt, with ``failures`` counted."""
        if failures < self.free_attempts:
            return 0.0
        if failures >= self.lockout_after:
            return self.lockout_seconds
        # min() on the exponent first keeps 2 ** x small for large counts.
        doublings = min(failures - self.free_attempts, 64)
        return min(self.base_delay * 2.0**doublings, self.max_delay)

    def counted(self, record: AttemptRecord, now: float) -> int:
        """The record's count after forgiveness for the quiet time since its last failure."""
        quiet = max(0.0, now - record.last_failure)
        return max(0, record.failures - int(quiet // self.forgive_every))


ACCOUNT_POLICY = BackoffPolicy(
    free_attempts=5,
    base_delay=1.0,
    max_delay=900.0,
    lockout_after=20,
    lockout_seconds=3600.0,
    forgive_every=3600.0,
)
"""Per account name: 5 free, then 1 s doubling to 15 min; from 20 failures one try an hour."""

SOURCE_POLICY = BackoffPolicy(
    free_attempts=20,
    base_delay=1.0,
    max_delay=900.0,
    lockout_after=100,
    lockout_seconds=3600.0,
    forgive_every=180.0,
)
"""Per source: more room for many people behind one address; forgives 20 failures an hour."""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One counter: failures counted at the last failure, when it was, and when the record is moot."""

    failures: int
    last_failure: float
    expires: float


class AttemptStore(Protocol):
    """Where counters live. A database-backed store must make :meth:`update` atomic per key."""

    def get(self, key: str) -> AttemptRecord | None:
        """The record under ``key``, if any (expired records may be returned)."""
        ...

    def update(
        self, key: str, change: Callable[[AttemptRecord | None], AttemptRecord | None]
    ) -> AttemptRecord | None:
        """Atomically replace the record under ``key`` by ``change(current)``; ``None`` deletes it."""
        ...

    def purge(self, now: float) -> int:
        """Delete the records that expire at or before ``now``; return how many."""
        ...


class MemoryAttemptStore:
    """An :class:`AttemptStore` in a dict, for one process (and tests). Call purge now and then."""

    def __init__(self) -> None:
        self._records: dict[str, AttemptRecord] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> AttemptRecord | None:
        return self._records.get(key)

    def update(
        self, key: str, change: Callable[[AttemptRecord | None], AttemptRecord | None]
    ) -> AttemptRecord | None:
        with self._lock:
            new = change(self._records.get(key))
            if new is None:
                self._records.pop(key, None)
            else:
                self._records[key] = new
            return new

    def purge(self, now: float) -> int:
        with self._lock:
            stale = [k for k, r in self._records.items() if r.expires <= now]
            for k in stale:
                del self._records[k]
            return len(stale)

    def __len__(self) -> int:
        return len(self._records)


class Throttle:
    """Failed-attempt throttling per account and per source. Pure logic over a store and a clock."""

    def __init__(
        self,
        store: AttemptStore,
        *,
        key_secret: bytes,
        account_policy: BackoffPolicy = ACCOUNT_POLICY,
        source_policy: BackoffPolicy = SOURCE_POLICY,
        clock: Clock = time.time,
    ) -> None:
        if not isinstance(key_secret, bytes) or len(key_secret) < 16:
            raise InputError(
                "the throttle's key_secret must be at least 16 bytes",
                hint="generate one with secrets.token_bytes(32) and share it between processes",
            )
        self._store = store
        self._secret = key_secret
        self._account_policy = account_policy
        self._source_policy = source_policy
        self._clock = clock

    # Keys --------------------------------------------------------------------------------------

    def _key(self, kind: str, value: str) -> str:
        mac = hmac.new(self._secret, f"{kind}\x00{value}".encode("utf-8", "surrogatepass"), hashlib.sha256)
        return f"{kind}:{mac.hexdigest()}"

    def _keys(self, account: str, source: str) -> tuple[tuple[str, BackoffPolicy], tuple[str, BackoffPolicy]]:
        return (
            (self._key("account", _account_id(account)), self._account_policy),
            (self._key("source", _source_id(source)), self._source_policy),
        )

    # Operations --------------------------------------------------------------------------------

    def check(self, account: str, source: str) -> None:
        """Raise :class:`ThrottledError` if either counter says wait; call before verifying anything."""
        now = self._clock()
        remaining = 0.0
        for key, policy in self._keys(account, source):
            record = self._store.get(key)
            if record is not None:
                remaining = max(remaining, record.last_failure + policy.wait(record.failures) - now)
        if remaining > 0:
            raise ThrottledError(max(1, math.ceil(remaining)))

    def record_failure(self, account: str, source: str) -> None:
        """Count a failed attempt against both the account name and the source."""
        now = self._clock()
        for key, policy in self._keys(account, source):
            self._store.update(key, _failure(policy, now))

    def record_source_failure(self, source: str) -> None:
        """Count a failed attempt against the source only: for failures that say nothing about the
        account (anyone can send them for any name), so that they cannot lock a person out."""
        self._store.update(
            self._key("source", _source_id(source)), _failure(self._source_policy, self._clock())
        )

    def record_success(self, account: str, source: str) -> None:
        """Clear the account's counter. The source's counter is left as it is."""
        self._store.update(self._keys(account, source)[0][0], lambda _: None)

    def reset_account(self, account: str) -> None:
        """Clear the account's counter without a sign-in (after account recovery, by an administrator)."""
        self._store.update(self._key("account", _account_id(account)), lambda _: None)

    def purge(self) -> int:
        """Drop counters that no longer affect anything; returns how many."""
        return self._store.purge(self._clock())


def _failure(policy: BackoffPolicy, now: float) -> Callable[[AttemptRecord | None], AttemptRecord]:
    def change(current: AttemptRecord | None) -> AttemptRecord:
        failures = 1 + (policy.counted(current, now) if current is not None else 0)
        expires = now + max(policy.wait(failures), failures * policy.forgive_every)
        return AttemptRecord(failures=failures, last_failure=now, expires=expires)

    return change


def _account_id(account: str) -> str:
    """Account names compare as NFC, case-folded and stripped, so "Alice" shares alice's counter."""
    return unicodedata.normalize("NFC", account).casefold().strip()


def _source_id(source: str) -> str:
    """An IPv4 address as is; IPv6 by its /64 (one host usually holds the whole /64); else the text."""
    text = source.strip()
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text.casefold()
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
