"""Failed sign-in throttling (gpaisec.access.ratelimit), driven by a fake clock."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpaisec.access.ratelimit import (
    ACCOUNT_POLICY,
    SOURCE_POLICY,
    AttemptStore,
    BackoffPolicy,
    MemoryAttemptStore,
    Throttle,
    ThrottledError,
)
from gpaisec.errors import GpaisecError, InputError

SECRET = b"k" * 32
IP = "203.0.113.7"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryAttemptStore:
    return MemoryAttemptStore()


@pytest.fixture
def throttle(store: MemoryAttemptStore, clock: FakeClock) -> Throttle:
    return Throttle(store, key_secret=SECRET, clock=clock)


def retry_after(throttle: Throttle, account: str, source: str = IP) -> int:
    """Seconds the throttle asks for, or 0 if the attempt may go ahead."""
    try:
        throttle.check(account, source)
    except ThrottledError as exc:
        return exc.retry_after
    return 0


def fail(throttle: Throttle, account: str, times: int = 1, source: str = IP) -> None:
    for _ in range(times):
        throttle.record_failure(account, source)


# --- basics -------------------------------------------------------------------------------------


def test_memory_store_is_an_attempt_store(store: MemoryAttemptStore) -> None:
    assert isinstance(store, MemoryAttemptStore)
    typed: AttemptStore = store  # checked by mypy
    assert typed.get("nothing") is None


def test_fresh_account_and_source_are_not_throttled(throttle: Throttle) -> None:
    throttle.check("alice", IP)


def test_throttled_after_the_free_attempts(throttle: Throttle) -> None:
    fail(throttle, "alice", ACCOUNT_POLICY.free_attempts - 1)
    throttle.check("alice", IP)
    fail(throttle, "alice")
    with pytest.raises(ThrottledError) as info:
        throttle.check("alice", IP)
    assert info.value.retry_after == 1
    assert isinstance(info.value, GpaisecError)
    assert info.value.exit_code == 6
    assert "alice" not in info.value.diagnostics()


def test_back_off_doubles_up_to_the_cap_then_locks_out(throttle: Throttle, clock: FakeClock) -> None:
    fail(throttle, "alice", ACCOUNT_POLICY.free_attempts)
    waits = []
    for _ in range(ACCOUNT_POLICY.lockout_after - ACCOUNT_POLICY.free_attempts + 2):
        wait = retry_after(throttle, "alice")
        waits.append(wait)
        clock.advance(wait)
        throttle.check("alice", IP)
        fail(throttle, "alice")
    assert waits[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert waits[10:15] == [900] * 5  # max_delay
    assert waits[15:] == [3600] * 2  # the lockout window, again after each further failure
    assert retry_after(throttle, "alice") == 3600


def test_waiting_just_short_is_not_enough(throttle: Throttle, clock: FakeClock) -> None:
    fail(throttle, "alice", ACCOUNT_POLICY.free_attempts + 3)  # wait 8 s
    clock.advance(7.5)
    assert retry_after(throttle, "alice") == 1
    clock.advance(0.5)
    throttle.check("alice", IP)


def test_success_resets_the_account_but_not_the_source(throttle: Throttle) -> None:
    fail(throttle, "alice", ACCOUNT_POLICY.free_attempts)
    assert retry_after(throttle, "alice") > 0
    throttle.record_success("alice", IP)
    throttle.check("alice", IP)
    # The source's count is kept: failures before and after the success add up.
    fail(throttle, "bob", SOURCE_POLICY.free_attempts - ACCOUNT_POLICY.free_attempts, source=IP)
    assert retry_after(throttle, "carol", IP) == 1
    throttle.record_success("carol", IP)
    assert retry_after(throttle, "carol", IP) == 1


def test_source_limit_holds_across_accounts(throttle: Throttle) -> None:
    # Password spraying: one guess each for many accounts from one address.
    for n in range(SOURCE_POLICY.free_attempts):
        throttle.check(f"user{n}", IP)
        fail(throttle, f"user{n}")
    assert retry_after(throttle, "someone-new", IP) == 1
    throttle.check("someone-new", "198.51.100.1")  # the same account from elsewhere is fine


def test_account_limit_holds_across_sources(throttle: Throttle) -> None:
    for n in range(ACCOUNT_POLICY.free_attempts):
        fail(throttle, "alice", source=f"198.51.100.{n}")
    assert retry_after(throttle, "alice", "192.0.2.99") == 1


def test_unknown_accounts_are_throttled_the_same(clock: FakeClock) -> None:
    # The throttle never knows which accounts exist; the same steps give the same answers.
    def run(account: str) -> list[tuple[int, str]]:
        throttle = Throttle(MemoryAttemptStore(), key_secret=SECRET, clock=FakeClock())
        seen = []
        for _ in range(ACCOUNT_POLICY.free_attempts + 3):
            try:
                throttle.check(account, IP)
                seen.append((0, ""))
            except ThrottledError as exc:
                seen.append((exc.retry_after, exc.diagnostics()))
            fail(throttle, account)
        return seen

    assert run("alice") == run("no-such-user-xyz")


def test_forgiveness_over_quiet_time(throttle: Throttle, clock: FakeClock) -> None:
    fail(throttle, "alice", ACCOUNT_POLICY.free_attempts)
    clock.advance(ACCOUNT_POLICY.forgive_every * 2)
    throttle.check("alice", IP)
    fail(throttle, "alice")  # counted: 5 - 2 + 1 = 4, still under the free attempts
    throttle.check("alice", IP)
    fail(throttle, "alice")  # 5: wait again
    assert retry_after(throttle, "alice") == 1


def test_reset_account(throttle: Throttle) -> None:
    fail(throttle, "alice", ACCOUNT_POLICY.lockout_after)
    assert retry_after(throttle, "alice", "192.0.2.1") == 3600
    throttle.reset_account("alice")
    throttle.check("alice", "192.0.2.1")


# --- keys ---------------------------------------------------------------------------------------


def test_account_names_are_normalised(throttle: Throttle) -> None:
    fail(throttle, "Alice", ACCOUNT_POLICY.free_attempts - 1, source="192.0.2.1")
    fail(throttle, " alice ", source="192.0.2.2")
    assert retry_after(throttle, "ALICE", "192.0.2.3") == 1
    # NFC: decomposed and composed forms share one counter.
    fail(throttle, "jose\u0301", ACCOUNT_POLICY.free_attempts, source="192.0.2.4")
    assert retry_after(throttle, "jos\u00e9", "192.0.2.5") == 1


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4(throttle: Throttle) -> None:
    for n in range(SOURCE_POLICY.free_attempts):
        fail(throttle, f"user{n}", source=f"2001:db8:1:2::{n + 1:x}")
    assert retry_after(throttle, "x", "2001:db8:1:2:ffff::1") == 1
    throttle.check("x", "2001:db8:1:3::1")
    for n in range(SOURCE_POLICY.free_attempts):
        fail(throttle, f"user{n}", source="::ffff:192.0.2.77")
    assert retry_after(throttle, "y", "192.0.2.77") == 1


def test_store_holds_no_names_or_addresses(throttle: Throttle, store: MemoryAttemptStore) -> None:
    fail(throttle, "alice-typed-her-password-here", source=IP)
    keys = list(store._records)
    assert len(keys) == 2
    assert all("alice" not in k and IP not in k for k in keys)
    other = Throttle(store, key_secret=b"z" * 32)
    other.check("alice-typed-her-password-here", IP)  # a different secret, different keys


def test_key_secret_must_be_long_enough(store: MemoryAttemptStore) -> None:
    with pytest.raises(InputError, match="16 bytes"):
        Throttle(store, key_secret=b"short")


def test_purge_drops_only_expired_records(
    throttle: Throttle, store: MemoryAttemptStore, clock: FakeClock
) -> None:
    fail(throttle, "alice")
    clock.advance(SOURCE_POLICY.forgive_every)
    assert throttle.purge() == 1  # the source record (one failure, forgiven after 3 minutes)
    clock.advance(ACCOUNT_POLICY.forgive_every)
    assert throttle.purge() == 1
    assert len(store) == 0


# --- policy -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"free_attempts": -1}, "0 or more"),
        ({"lockout_after": 5}, "more than free_attempts"),
        ({"base_delay": 0}, "positive"),
        ({"forgive_every": float("inf")}, "positive"),
        ({"max_delay": 0.5}, "must grow"),
        ({"lockout_seconds": 60.0}, "must grow"),
        ({"free_attempts": 2.5}, "whole number"),
        ({"lockout_after": 101}, "at most 100"),
    ],
)
def test_policy_validation(change: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {
        "free_attempts": 5,
        "base_delay": 1.0,
        "max_delay": 900.0,
        "lockout_after": 20,
        "lockout_seconds": 3600.0,
        "forgive_every": 3600.0,
    }
    fields.update(change)
    with pytest.raises(InputError, match=match):
        BackoffPolicy(**fields)  # type: ignore[arg-type]


def test_policy_wait_handles_huge_counts() -> None:
    assert ACCOUNT_POLICY.wait(10**9) == ACCOUNT_POLICY.lockout_seconds
    policy = BackoffPolicy(
        free_attempts=0,
        base_delay=1.0,
        max_delay=60.0,
        lockout_after=100,
        lockout_seconds=60.0,
        forgive_every=1,
    )
    assert policy.wait(99) == 60.0


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=7200)), max_size=60))
def test_waiting_as_told_always_lets_the_next_attempt_through(steps: list[tuple[bool, float]]) -> None:
    clock = FakeClock()
    throttle = Throttle(MemoryAttemptStore(), key_secret=SECRET, clock=clock)
    for failed, pause in steps:
        clock.advance(pause)
        wait = retry_after(throttle, "alice")
        assert 0 <= wait <= max(ACCOUNT_POLICY.lockout_seconds, SOURCE_POLICY.lockout_seconds)
        clock.advance(wait)
        throttle.check("alice", IP)
        if failed:
            fail(throttle, "alice")
        else:
            throttle.record_success("alice", IP)


def test_concurrent_failures_are_all_counted() -> None:
    store = MemoryAttemptStore()
    throttle = Throttle(store, key_secret=SECRET, clock=FakeClock())

    def hammer() -> None:
        fail(throttle, "alice", 200)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.failures for r in store._records.values()) == [1600, 1600]
