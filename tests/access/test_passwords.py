"""The password policy, the blocklist and argon2id hashing (gpaisec.access.passwords)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import json
import logging
import statistics
import time
import timeit
import types
import unicodedata
from importlib import resources
from itertools import pairwise
from pathlib import Path

import argon2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gpaisec.access import passwords as pw
from gpaisec.access.passwords import (
    DEFAULT_HASH_PARAMS,
    HashParams,
    PasswordContext,
    PasswordPolicy,
    WeakPasswordError,
    WeakReason,
    WrongPasswordError,
    blocklist,
    blocklist_info,
    check_password,
    hash_password,
    is_blocklisted,
    needs_rehash,
    normalise,
    verify_dummy,
    verify_password,
)
from gpaisec.errors import GpaisecError, InputError, IntegrityError

REPO = Path(__file__).resolve().parents[2]
POLICY = PasswordPolicy()
NO_CONTEXT = PasswordContext()
ALICE = PasswordContext(user_name="alice.smith", person_name="Alice Smith", organisation="Example AI")
FAST = HashParams.unsafe_fast()

# Characters a person could type: letters, marks, digits, punctuation, symbols, spaces.
TYPABLE = st.characters(categories=("L", "M", "N", "P", "S", "Zs"))


def refusal(
    candidate: str, *, policy: PasswordPolicy = POLICY, context: PasswordContext = NO_CONTEXT
) -> WeakReason:
    with pytest.raises(WeakPasswordError) as info:
        check_password(candidate, policy=policy, context=context)
    return info.value.reason


# --- policy -------------------------------------------------------------------------------------


def test_policy_defaults_follow_nist() -> None:
    assert POLICY.min_length == 15
    assert POLICY.max_length == 128
    assert PasswordPolicy(min_length=8).min_length == 8


@given(st.integers(max_value=7))
def test_policy_refuses_minimum_below_8(min_length: int) -> None:
    with pytest.raises(InputError, match="fewer than 8"):
        PasswordPolicy(min_length=min_length)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_length": 63}, "at least 64"),
        ({"min_length": 100, "max_length": 99}, "at least 100"),
        ({"max_length": 1025}, "more than 1024"),
        ({"min_length": 15.5}, "whole number"),
        ({"min_length": True}, "whole number"),
    ],
)
def test_policy_refuses_bad_bounds(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        PasswordPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        POLICY.min_length = 8  # type: ignore[misc]


@given(st.text(TYPABLE, max_size=20))
def test_anything_shorter_than_the_minimum_is_refused(candidate: str) -> None:
    assume(len(normalise(candidate)) < POLICY.min_length)
    assert refusal(candidate) is WeakReason.TOO_SHORT


def _no_pattern(s: str) -> bool:
    """No character twice and no neighbours one code point or a keyboard key apart."""
    folded = s.casefold()
    if len(set(folded)) != len(folded):
        return False
    return not any(pw._predictable_step(a, b) for a, b in pairwise(folded))


@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow], deadline=None)
@given(st.lists(TYPABLE, min_size=15, max_size=64, unique=True).map("".join))
def test_random_unicode_of_15_or_more_is_accepted(candidate: str) -> None:
    nfc = normalise(candidate)
    assume(15 <= len(nfc) <= 128 and _no_pattern(nfc) and not is_blocklisted(nfc))
    check_password(candidate, policy=POLICY, context=NO_CONTEXT)


def test_a_64_character_passphrase_with_spaces_is_accepted() -> None:
    phrase = "velvet otters negotiate with lighthouse keepers every thursday x"
    assert len(phrase) == 64
    check_password(phrase, policy=POLICY, context=ALICE)


def test_max_length_is_inclusive_and_configurable() -> None:
    words = "amber basil cobalt dune fjord garnet heron indigo jasper kelp lumen marrow nectar onyx pewter "
    long = (words + "quartz russet saffron thistle vivid walnut")[:128]
    check_password(long, policy=POLICY, context=NO_CONTEXT)
    assert refusal(long + "z") is WeakReason.TOO_LONG
    check_password(long + "z", policy=PasswordPolicy(max_length=200), context=NO_CONTEXT)


def test_length_counts_code_points_after_nfc() -> None:
    # 15 code points when decomposed (e + combining acute), 14 after NFC.
    decomposed = "cafe\u0301 au lait o"
    assert len(decomposed) == 15
    assert len(normalise(decomposed)) == 14
    assert refusal(decomposed) is WeakReason.TOO_SHORT
    # Astral characters are one character each, not two UTF-16 units or four bytes.
    emoji = "\U0001f98a\U0001f333\U0001f30a\U0001f525\U0001f36f\U0001f3b2\U0001f9ed\U0001f4a1"
    check_password(emoji + " fox tree wave", policy=POLICY, context=NO_CONTEXT)


def test_no_composition_rules() -> None:
    for candidate in ("all lower case words here", "ALL UPPER CASE WORDS HERE", "ünïcödé wörds änd spåces"):
        check_password(candidate, policy=POLICY, context=NO_CONTEXT)


@pytest.mark.parametrize("bad", ["\x00", "\n", "\ud800", "\u0378"])
def test_control_surrogate_and_unassigned_characters_are_refused(bad: str) -> None:
    assert refusal(f"granite river {bad}lanterns") is WeakReason.UNUSABLE_CHARACTER


# --- blocklist ----------------------------------------------------------------------------------


def _data(name: str) -> bytes:
    return resources.files("gpaisec.access").joinpath("data", name).read_bytes()


def test_blocklist_size_digest_and_known_entries() -> None:
    meta = json.loads(_data("blocklist.json"))
    raw = _data(meta["file"])
    assert meta["count"] >= 100_000
    assert hashlib.sha256(raw).hexdigest() == meta["sha256"]
    assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == meta["text_sha256"]
    entries = blocklist()
    assert len(entries) == meta["count"] == blocklist_info().count
    for known in ("password", "qwerty", "iloveyou", "123456", "letmein", "dragon"):
        assert known in entries


def test_blocklist_file_is_folded_deduplicated_and_sorted() -> None:
    lines = gzip.decompress(_data("blocklist.txt.gz")).decode("utf-8").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert lines == sorted(set(lines))
    assert all(line and line == normalise(line).strip().lower() for line in lines)


def test_blocklist_membership_is_fast() -> None:
    entries = blocklist()
    n = 100_000
    per_lookup = (
        min(timeit.repeat("'correct horse battery' in e", globals={"e": entries}, number=n, repeat=5)) / n
    )
    assert per_lookup < 1e-6


@pytest.mark.parametrize(
    "variant", ["password", "PASSWORD", "PassWord", "  password", "password\u00a0 ", "\u3000iLoveYou "]
)
def test_blocklist_ignores_case_and_surrounding_whitespace(variant: str) -> None:
    assert is_blocklisted(variant)
    assert refusal(variant, policy=PasswordPolicy(min_length=8)) is WeakReason.BLOCKLISTED


def test_blocklist_hit_on_a_long_entry_with_the_default_policy() -> None:
    long_entries = sorted(e for e in blocklist() if 15 <= len(e) <= 128 and " " not in e)
    assert long_entries
    assert refusal(long_entries[0].upper()) is WeakReason.BLOCKLISTED


def test_tampered_blocklist_is_an_integrity_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hashlib.sha256

    class Wrong:
        def __init__(self, data: bytes) -> None:
            self._h = real(data + b"x")

        def hexdigest(self) -> str:
            return self._h.hexdigest()

    monkeypatch.setattr("gpaisec.access.passwords.hashlib", types.SimpleNamespace(sha256=Wrong))
    with pytest.raises(IntegrityError, match="does not match"):
        pw._read_blocklist()


def test_generator_reproduces_the_committed_files() -> None:
    pytest.importorskip("zxcvbn")
    pytest.importorskip("django")
    spec = importlib.util.spec_from_file_location("make_blocklist", REPO / "scripts" / "make_blocklist.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gz, meta = module.build()
    assert json.loads(meta)["text_sha256"] == json.loads(_data("blocklist.json"))["text_sha256"]
    assert gz == _data("blocklist.txt.gz")
    assert meta == _data("blocklist.json")


# --- context words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "what"),
    [
        ("alice.smith", "your user name"),
        ("Alice.Smith.2024!!", "your user name"),
        ("ALICESMITHALICESMITH", "your user name"),
        ("htimsecila htimsecila", "your user name"),  # reversed
        ("example ai example ai 2024", "your organisation's name"),
        ("gpaisec gpaisec 2024", "the name of this service"),
        ("GPAISEC-admin-GPAISEC", "the name of this service"),
    ],
)
def test_passwords_made_of_context_words_are_refused(candidate: str, what: str) -> None:
    with pytest.raises(WeakPasswordError) as info:
        check_password(candidate, policy=PasswordPolicy(min_length=8), context=ALICE)
    assert info.value.reason is WeakReason.CONTEXT
    assert what in info.value.message


def test_name_parts_count_on_their_own() -> None:
    context = PasswordContext(user_name="u1234", person_name="Marguerite Okonkwo-Delacroix")
    with pytest.raises(WeakPasswordError, match="your name"):
        check_password("delacroix marguerite 77", policy=POLICY, context=context)


def test_a_context_word_inside_a_longer_passphrase_is_fine() -> None:
    check_password("alice keeps seven brass telescopes", policy=POLICY, context=ALICE)
    check_password("gpaisec guards opal vaults quietly", policy=POLICY, context=ALICE)


def test_short_name_parts_are_ignored() -> None:
    context = PasswordContext(person_name="Bo Li")
    check_password("bo li walks bo li talks", policy=POLICY, context=context)


def test_other_words_count_too() -> None:
    context = PasswordContext(other=("Frontier-7B",))
    assert refusal("frontier7b frontier7b", context=context) is WeakReason.CONTEXT


# --- repetition and sequences -------------------------------------------------------------------


@pytest.mark.parametrize(
    "candidate",
    [
        "aaaaaaaaaaaaaaa",
        "123456789012345",
        "987654321098765",
        "abcdefghijklmnop",
        "zyxwvutsrqponmlk",
        "qwertyuiopasdfgh",
        "abcabcabcabcabca",
        "passwordpassword",
        "Tr0ub4dor&3Tr0ub4dor&3",
        "               ",
        "aAaAaAaAaAaAaAaA",
    ],
)
def test_repetitive_and_sequential_passwords_are_refused(candidate: str) -> None:
    assert refusal(candidate) is WeakReason.REPETITIVE


@pytest.mark.parametrize(
    "candidate",
    [
        "correct horse battery staple",
        "committee assessment bookkeeper",
        "the quick brown fox jumps over the lazy dog",
        "738291046582913",
        "日本語のパスワードは長くても覚えやすいです",
    ],
)
def test_ordinary_passphrases_are_not_repetitive(candidate: str) -> None:
    check_password(candidate, policy=POLICY, context=NO_CONTEXT)


def test_repetition_check_is_quick_on_the_longest_inputs() -> None:
    policy = PasswordPolicy(max_length=1024)
    started = time.perf_counter()
    for candidate in ("ab" * 512, "a" * 1024, "".join(chr(0x4E00 + 7 * i) for i in range(1024))):
        with contextlib.suppress(WeakPasswordError):
            check_password(candidate, policy=policy, context=ALICE)
    assert time.perf_counter() - started < 1.0


# --- messages -----------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.text(TYPABLE, min_size=0, max_size=140))
def test_refusals_never_echo_the_password(candidate: str) -> None:
    refused: WeakPasswordError | None = None
    try:
        check_password(candidate, policy=POLICY, context=ALICE)
    except WeakPasswordError as exc:
        refused = exc
    if refused is not None:
        assert isinstance(refused, InputError)
        assert refused.exit_code == 2
        assert refused.hint
        if len(candidate.strip()) >= 12:
            assert candidate not in refused.diagnostics()


# --- hashing ------------------------------------------------------------------------------------


def test_default_parameters_are_rfc_9106_low_memory() -> None:
    assert DEFAULT_HASH_PARAMS.as_argon2() == argon2.profiles.RFC_9106_LOW_MEMORY


def test_round_trip_with_default_parameters() -> None:
    stored = hash_password("granite river lanterns")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    verify_password(stored, "granite river lanterns")
    with pytest.raises(WrongPasswordError) as info:
        verify_password(stored, "granite river lantern")
    assert isinstance(info.value, GpaisecError)
    assert "granite" not in info.value.diagnostics()
    assert not needs_rehash(stored)


def test_hashes_are_salted() -> None:
    assert hash_password("granite river lanterns", params=FAST) != hash_password(
        "granite river lanterns", params=FAST
    )


@settings(max_examples=30, deadline=None)
@given(st.text(TYPABLE, min_size=1, max_size=80), st.text(TYPABLE, min_size=1, max_size=80))
def test_round_trip_property(secret: str, other: str) -> None:
    stored = hash_password(secret, params=FAST)
    verify_password(stored, secret)
    if normalise(other) != normalise(secret):
        with pytest.raises(WrongPasswordError):
            verify_password(stored, other)


def test_verification_uses_nfc() -> None:
    composed = "caf\u00e9 au lait, s'il vous pla\u00eet"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    verify_password(hash_password(decomposed, params=FAST), composed)


def test_needs_rehash_when_parameters_change() -> None:
    stored = hash_password("granite river lanterns", params=FAST)
    assert needs_rehash(stored)
    assert not needs_rehash(stored, params=FAST)


@pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$m=65536,t=3,p=4$", "$argon2id$ünï"])
def test_malformed_stored_hash_is_an_integrity_error(stored: str) -> None:
    with pytest.raises(IntegrityError):
        verify_password(stored, "granite river lanterns")
    with pytest.raises(IntegrityError):
        needs_rehash(stored)


def test_candidates_that_can_never_match_fail_like_a_wrong_password() -> None:
    stored = hash_password("granite river lanterns", params=FAST)
    for candidate in ("granite \ud800", "x" * 5000):
        with pytest.raises(WrongPasswordError):
            verify_password(stored, candidate)


def test_hash_refuses_what_cannot_be_stored() -> None:
    with pytest.raises(InputError):
        hash_password("x" * 1025, params=FAST)
    with pytest.raises(InputError):
        hash_password("lone \ud800 surrogate", params=FAST)


def test_weak_parameters_are_refused_and_unsafe_ones_warn(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(InputError, match="too weak"):
        HashParams(memory_cost=1024)
    with pytest.raises(InputError, match="too weak"):
        HashParams(time_cost=1)
    with pytest.raises(InputError, match="positive"):
        HashParams(parallelism=0)
    with caplog.at_level(logging.WARNING, logger="gpaisec.access.passwords"):
        HashParams.unsafe_fast()
    assert "unsafe" in caplog.text


def test_verify_dummy_always_fails() -> None:
    with pytest.raises(WrongPasswordError) as info:
        verify_dummy("anything at all here")
    stored = hash_password("granite river lanterns")
    with pytest.raises(WrongPasswordError) as real:
        verify_password(stored, "anything at all here")
    assert info.value.diagnostics() == real.value.diagnostics()
    with pytest.raises(WrongPasswordError):
        verify_dummy("anything", params=FAST)


def test_precomputed_dummy_hash_matches_the_default_parameters() -> None:
    # If this fails after DEFAULT_HASH_PARAMS changed, regenerate _DEFAULT_DUMMY_HASH with
    # hash_password(secrets.token_urlsafe(32)) and paste it in.
    assert argon2.extract_parameters(pw._DEFAULT_DUMMY_HASH) == DEFAULT_HASH_PARAMS.as_argon2()
    assert not needs_rehash(pw._DEFAULT_DUMMY_HASH)


@pytest.mark.slow
def test_missing_account_costs_the_same_time_as_a_wrong_password() -> None:
    stored = hash_password("granite river lanterns")
    real: list[float] = []
    dummy: list[float] = []
    for _ in range(5):
        started = time.perf_counter()
        with pytest.raises(WrongPasswordError):
            verify_password(stored, "a wrong guess of a password")
        real.append(time.perf_counter() - started)
        started = time.perf_counter()
        with pytest.raises(WrongPasswordError):
            verify_dummy("a wrong guess of a password")
        dummy.append(time.perf_counter() - started)
    ratio = statistics.median(dummy) / statistics.median(real)
    assert 0.5 <= ratio <= 2.0, (ratio, real, dummy)
