"""The audit entry: one canonical JSON object, the exact bytes that are hashed into the tree.

An entry is a JSON object with exactly these keys, sorted, no whitespace, UTF-8 (non-ASCII kept as is)::

    {"action":"device.add","actor":"os:alice","details":{...},"object":"device:gpu-7",
     "seq":41,"time":"2026-11-27T14:53:05.123456Z"}

``seq`` is the entry's position in the log (leaf index, from 0); ``time`` is RFC 3339 UTC with
microseconds. Verifiers hash the stored bytes and never re-serialise them; they also check that the
bytes are canonical, so one event has one encoding.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Entry",
    "EntryError",
    "canonical_json",
    "encode_entry",
    "format_time",
    "parse_entry",
    "parse_time",
]

KEYS = ("action", "actor", "details", "object", "seq", "time")
MAX_ACTOR = 200
MAX_ACTION = 100
MAX_OBJECT = 500
ACTION_RE = re.compile(r"[a-z][a-z0-9_]*(?:[.:-][a-z0-9_]+)*")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class EntryError(ValueError):
    """An entry's content is not acceptable; the message says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    time: dt.datetime
    actor: str
    action: str
    object: str
    details: dict[str, Any]


def format_time(value: dt.datetime) -> str:
    """RFC 3339, UTC, always six fractional digits and ``Z``."""
    if value.tzinfo is None:
        raise EntryError("a naive datetime cannot be logged; use gpaisec.store.utcnow()")
    if value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


def parse_time(text: str) -> dt.datetime:
    """The inverse of :func:`format_time` (strict)."""
    if not TIME_RE.fullmatch(text):
        raise EntryError(f"time {text!r} is not RFC 3339 UTC with microseconds")
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise EntryError(f"time {text!r} is not a valid date and time") from None


def _check_value(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise EntryError(f"details{path} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise EntryError(f"details{path} has a key that is not a string: {k!r}")
            _check_value(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_value(v, f"{path}[{i}]")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise EntryError(f"details{path} is a {type(value).__name__}, which is not JSON")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_encode = _ENCODER.encode


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; raises EntryError for anything that is not plain JSON."""
    try:
        return _encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        _check_value(value, "")
        raise EntryError(f"details cannot be encoded as JSON: {exc}") from None


def _check_text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value or value[0].isspace() or value[-1].isspace():
        raise EntryError(f"{name} must be a non-empty string without surrounding spaces")
    if len(value) > limit:
        raise EntryError(f"{name} is longer than {limit} characters")
    if CONTROL_RE.search(value):
        raise EntryError(f"{name} contains a control character")
    return value


@functools.lru_cache(maxsize=1024)
def _action_ok(action: str) -> bool:
    return ACTION_RE.fullmatch(action) is not None


def check_fields(actor: object, action: object, obj: object) -> None:
    """Raise EntryError unless actor, action and object are acceptable."""
    _check_text("actor", actor, MAX_ACTOR)
    _check_text("action", action, MAX_ACTION)
    _check_text("object", obj, MAX_OBJECT)
    assert isinstance(action, str)
    if not _action_ok(action):
        raise EntryError(
            f"action {action!r} must be lower-case words joined by '.', ':' or '-' (e.g. device.add)"
        )


def encode_details(details: dict[str, Any] | None) -> str:
    """The canonical JSON text of an entry's details (what :func:`encode_entry` embeds)."""
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise EntryError("details must be a JSON object (a dict)")
    try:
        return _encode(details)
    except (TypeError, ValueError) as exc:
        _check_value(details, "")
        raise EntryError(f"details cannot be encoded as JSON: {exc}") from None


def encode_entry(
    seq: int,
    time: dt.datetime,
    actor: str,
    action: str,
    obj: str,
    details: dict[str, Any] | None,
    *,
    details_json: str | None = None,
) -> bytes:
    """The canonical bytes of one entry.

    ``details_json``: :func:`encode_details` of ``details``, if the caller has it already (the
    group writer encodes each event once, when it is submitted).
    """
    check_fields(actor, action, obj)
    if type(seq) is not int or seq < 0:
        raise EntryError("seq must be a non-negative integer")
    encoded = encode_details(details) if details_json is None else details_json
    # The keys in sorted order, each value encoded canonically: the same bytes as canonical_json of
    # the whole object (parse_entry checks exactly that), without sorting the outer object each time.
    text = (
        f'{{"action":{_encode(action)},"actor":{_encode(actor)},"details":{encoded},'
        f'"object":{_encode(obj)},"seq":{seq},"time":"{format_time(time)}"}}'
    )
    return text.encode("utf-8")


def parse_entry(data: bytes) -> Entry:
    """Parse and check stored entry bytes: valid, canonical, all fields well-formed. Raises EntryError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EntryError("not valid UTF-8") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EntryError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    except (ValueError, RecursionError) as exc:
        raise EntryError(f"not acceptable JSON ({exc.__class__.__name__})") from None
    if not isinstance(value, dict):
        raise EntryError("not a JSON object")
    if tuple(sorted(value)) != KEYS:
        raise EntryError(f"keys are {sorted(value)}, expected {list(KEYS)}")
    seq = value["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise EntryError("seq is not a non-negative integer")
    if not isinstance(value["details"], dict):
        raise EntryError("details is not a JSON object")
    if not isinstance(value["time"], str):
        raise EntryError("time is not a string")
    check_fields(value["actor"], value["action"], value["object"])
    time = parse_time(value["time"])
    try:
        again = canonical_json(value)
    except EntryError as exc:
        raise EntryError(f"not canonical: {exc}") from None
    if again != data:
        raise EntryError("not in canonical form (sorted keys, no whitespace, UTF-8)")
    return Entry(seq, time, value["actor"], value["action"], value["object"], value["details"])
