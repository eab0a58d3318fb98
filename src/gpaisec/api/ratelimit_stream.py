"""Output limits for streams of weights (appendix 4.3(3)): a byte rate and a total per grant.

Pure bookkeeping with an injectable clock; the route that streams asks before it sends.

1. Rate: a token bucket per principal and one per grant, each filled at ``bytes_per_second`` up to
   one second's worth (the burst). Sending ``n`` bytes takes ``n`` tokens from both; a bucket may go
   into debt, and the stream waits (paces itself) until the debt is paid. A request whose wait
   would exceed ``max_wait`` seconds (several streams at once pulling more than the rate allows) is
   refused: :class:`LimitExceeded` with ``kind="rate"``, and the stream is cut.
2. Total: a grant may be served at most ``max_bytes_per_grant`` bytes over all its streams. A
   request is trimmed to what is left; once nothing is left it is refused (``kind="total"``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_WAIT", "Allowance", "LimitExceeded", "Limits", "StreamLimiter", "TokenBucket"]

# How long one piece may wait for the rate before the stream counts as pulling too fast.
DEFAULT_MAX_WAIT = 2.0


@dataclass(frozen=True)
class Limits:
    """The limits of one interface (a served model version)."""

    bytes_per_second: int
    max_bytes_per_grant: int

    def __post_init__(self) -> None:
        for name in ("bytes_per_second", "max_bytes_per_grant"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive whole number of bytes, not {value!r}")


class LimitExceeded(Exception):  # noqa: N818 - the name says what happened to the stream
    """A stream asked for more than its limits allow; the stream must be cut."""

    def __init__(self, kind: str, key: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # rate | total
        self.key = key  # principal:<name> or grant:<id>
        self.message = message


@dataclass(frozen=True)
class Allowance:
    """What one request may send: ``granted`` bytes (possibly fewer than asked) after ``wait`` seconds."""

    granted: int
    wait: float


class TokenBucket:
    """A byte bucket: ``rate`` tokens a second, at most ``capacity`` saved; debt allowed."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("a bucket needs a positive rate and capacity")
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)

    def wait_for(self, n: int, now: float) -> float:
        """Seconds until ``n`` more tokens could be taken (0 if they are there now)."""
        self._refill(now)
        short = n - self.tokens
        return max(0.0, short / self.rate)

    def take(self, n: int, now: float) -> None:
        self._refill(now)
        self.tokens -= n


class StreamLimiter:
    """The limits of every stream of one server, shared between its streams (thread-safe)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_wait: float = DEFAULT_MAX_WAIT
    ) -> None:
        self.clock = clock
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._served: dict[str, int] = {}

    def _bucket(self, key: str, limits: Limits, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        rate = float(limits.bytes_per_second)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, rate, now)
        elif bucket.rate != rate:  # the configuration changed: the new rate applies from now
            bucket._refill(now)
            bucket.rate = bucket.capacity = rate
            bucket.tokens = min(bucket.tokens, rate)
        return bucket

    def served(self, grant: str) -> int | None:
        """Bytes served under ``grant`` so far, or None if this limiter has not seen it."""
        with self._lock:
            return self._served.get(grant)

    def remember(self, grant: str, served: int) -> None:
        """Seed the total of ``grant`` (from the audit log, after a restart); never lowers it."""
        with self._lock:
            self._served[grant] = max(self._served.get(grant, 0), served)

    def request(self, principal: str, grant: str, n: int, limits: Limits) -> Allowance:
        """Ask to send ``n`` bytes for ``principal`` under ``grant``; raises :class:`LimitExceeded`."""
        if n <= 0:
            return Allowance(0, 0.0)
        with self._lock:
            now = self.clock()
            # Step 2 first: the total per grant trims the request.
            served = self._served.get(grant, 0)
            left = limits.max_bytes_per_grant - served
            if left <= 0:
                raise LimitExceeded(
                    "total",
                    f"grant:{grant}",
                    f"grant {grant} has been served its limit of {limits.max_bytes_per_grant} bytes",
                )
            granted = min(n, left)
            # Step 1: the rate, for the principal and for the grant.
            keyed = (("principal", f"principal:{principal}"), ("grant", f"grant:{grant}"))
            buckets = [(key, self._bucket(key, limits, now)) for _, key in keyed]
            waits = [(b.wait_for(granted, now), key) for key, b in buckets]
            wait, key = max(waits)
            if wait > self.max_wait:
                raise LimitExceeded(
                    "rate",
                    key,
                    f"{key} asks for more than {limits.bytes_per_second} bytes a second "
                    f"(it would have to wait {wait:.1f} s, the most is {self.max_wait:.1f} s)",
                )
            for _, b in buckets:
                b.take(granted, now)
            self._served[grant] = served + granted
            return Allowance(granted, wait)
