"""The policy decision point (PDP): may this principal do this action on this resource, now?

Decisions come from Cedar policies (through ``cedarpy``) checked against a Cedar schema. The
packaged policy set (``policies/default.cedar``, ``policies/schema.cedarschema``) permits access to
unreleased model parameters only to a named person or a scoped service account, with fresh MFA, on
a managed encrypted device, vetted and trained, holding an active grant for exactly that resource
and action approved by two other people; docs/access-policy.md explains each rule. This module
reads no database: the caller builds the entities and the context (the ``*_entity`` and
:func:`request_context` helpers give their exact shape) and asks.

    policies = PolicySet.load()                  # the packaged set; or a file or directory
    pdp = PDP(policies)
    world = pdp.entities([...])                  # parse and check once, reuse for many decisions
    decision = pdp.decide(uid("Person", "alice"), "read", uid("ModelVersion", "m1@3"), world, ctx)
    pdp.authorize(...)                           # the same, but raises PolicyDeniedError if denied

Failing closed: an empty policy set denies everything; a policy set that does not parse or does not
validate against its schema cannot be loaded (:class:`~gpaisec.errors.ConfigError`); any error while
building or evaluating a request denies, even where Cedar would have allowed. A decision names the
``@id`` of every policy that determined it, and its ``@reason`` text for people; a permit annotated
``@alert("break_glass")`` sets :attr:`Decision.break_glass`, which the caller must alert on.

:func:`evaluate_plain` evaluates the packaged rules in plain Python. It is the reference the tests
cross-check Cedar against, and the baseline of ``bench/authz.py``; decisions never use it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import cedarpy

from gpaisec.errors import ConfigError, DeniedError, InputError

__all__ = [
    "ACTIONS",
    "DEFAULT_MFA_MAX_AGE_SECONDS",
    "NAMESPACE",
    "PDP",
    "Decision",
    "EntitySet",
    "PolicyDeniedError",
    "PolicySet",
    "Request",
    "cedar_datetime",
    "device_entity",
    "evaluate_plain",
    "explain",
    "grant_entity",
    "location_entity",
    "model_version_entity",
    "person_entity",
    "request_context",
    "service_account_entity",
    "uid",
]

_log = logging.getLogger(__name__)

NAMESPACE: Final = "Gpaisec"
#: Actions of the packaged schema: three on weights, then break-glass, approve and review.
ACTIONS: Final = ("read", "write", "export", "break_glass", "approve", "review")
#: Largest MFA age accepted for a session (12 h). Approvals need 5 minutes: checked by the approval flow.
DEFAULT_MFA_MAX_AGE_SECONDS: Final = 12 * 3600
ALERT_BREAK_GLASS: Final = "break_glass"

_PERSON, _SERVICE_ACCOUNT, _ROLE = "Gpaisec::Person", "Gpaisec::ServiceAccount", "Gpaisec::Role"
_DEVICE, _MODEL_VERSION, _LOCATION, _GRANT = (
    "Gpaisec::Device",
    "Gpaisec::ModelVersion",
    "Gpaisec::Location",
    "Gpaisec::Grant",
)
_ACTION = "Gpaisec::Action"
_WEIGHTS = frozenset({_MODEL_VERSION, _LOCATION})
_PDP_SETS = "mfa_max_age_seconds"  # set by the PDP from its configuration, never by the caller
_MAX_ERROR_CHARS = 400
_DENY_BY_DEFAULT = "no policy permits this request (access is denied by default)"
_POLICY_REF = re.compile(r"`(policy\d+)`")
_ENTITY_CACHE_SIZE = 1024
_ENTITY_CACHE_MAX_CHARS = 64 * 1024

EntityUid = Mapping[str, str]
"""An entity reference in Cedar's JSON form: ``{"type": "Gpaisec::Person", "id": "alice"}``."""


# ---------------------------------------------------------------------------------------------------
# Entity and context shapes (what the store builds)
# ---------------------------------------------------------------------------------------------------


def uid(entity_type: str, entity_id: str) -> dict[str, str]:
    """The reference to an entity of the schema's namespace: ``uid("Person", "alice")``."""
    if "::" not in entity_type:
        entity_type = f"{NAMESPACE}::{entity_type}"
    return {"type": entity_type, "id": entity_id}


def cedar_datetime(t: datetime) -> str:
    """``t`` as a Cedar ``datetime`` string in UTC with milliseconds: ``2026-05-01T09:30:00.000Z``."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise InputError(f"time {t.isoformat()} has no time zone", hint="pass an aware datetime (UTC)")
    u = t.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond // 1000:03d}Z"
    )


def _entity(
    ref: dict[str, str], attrs: dict[str, Any], parents: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {"uid": ref, "parents": parents or [], "attrs": attrs}


def person_entity(
    person_id: str,
    *,
    background_check_valid_until: datetime,
    insider_training_valid_until: datetime,
    roles: Iterable[str] = (),
    shared: bool = False,
) -> dict[str, Any]:
    """A person; ``roles`` ("break_glass", "approver", "reviewer") become its parents."""
    return _entity(
        uid(_PERSON, person_id),
        {
            "shared": shared,
            "background_check_valid_until": cedar_datetime(background_check_valid_until),
            "insider_training_valid_until": cedar_datetime(insider_training_valid_until),
        },
        [uid(_ROLE, r) for r in sorted(set(roles))],
    )


def service_account_entity(account_id: str, *, scopes: Iterable[str]) -> dict[str, Any]:
    """A service account; scopes are "weights:read", "weights:write", "weights:export"."""
    return _entity(uid(_SERVICE_ACCOUNT, account_id), {"scopes": sorted(set(scopes))})


def device_entity(device_id: str, *, managed: bool, disk_encrypted: bool, edr: bool) -> dict[str, Any]:
    """A device as the inventory knows it."""
    return _entity(
        uid(_DEVICE, device_id), {"managed": managed, "disk_encrypted": disk_encrypted, "edr": edr}
    )


def model_version_entity(version_id: str, *, model: str, released: bool) -> dict[str, Any]:
    """One version of a model's weights."""
    return _entity(uid(_MODEL_VERSION, version_id), {"model": model, "released": released})


def location_entity(location_id: str, *, version: str) -> dict[str, Any]:
    """A place holding a copy of the weights of ``version`` (a ModelVersion id)."""
    return _entity(uid(_LOCATION, location_id), {"version": uid(_MODEL_VERSION, version)})


def grant_entity(
    grant_id: str,
    *,
    requester: str,
    version: str,
    action: str,
    approvers: Iterable[str],
    not_before: datetime,
    expires: datetime,
    state: str,
    location: str | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """A grant. ``requester`` and ``approvers`` are Person ids; ``approvals`` is computed from the
    distinct approvers, so the count and the set cannot disagree. ``location`` narrows the grant to
    one copy of the version; ``service_account`` makes it a grant for that account, owned by the
    requester. ``state``: "pending", "active" or "revoked"."""
    distinct = sorted(set(approvers))
    attrs: dict[str, Any] = {
        "requester": uid(_PERSON, requester),
        "version": uid(_MODEL_VERSION, version),
        "action": uid(_ACTION, action),
        "approvals": len(distinct),
        "approvers": [uid(_PERSON, a) for a in distinct],
        "not_before": cedar_datetime(not_before),
        "expires": cedar_datetime(expires),
        "state": state,
    }
    if location is not None:
        attrs["location"] = uid(_LOCATION, location)
    if service_account is not None:
        attrs["service_account"] = uid(_SERVICE_ACCOUNT, service_account)
    return _entity(uid(_GRANT, grant_id), attrs)


def request_context(
    *,
    device: str,
    device_managed: bool,
    mfa_age_seconds: int,
    source_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
    now: datetime | None = None,
    grant: str | None = None,
    break_glass: bool = False,
) -> dict[str, Any]:
    """The context of a request. ``device`` and ``grant`` are ids; ``now`` defaults to the time the
    PDP decides. ``mfa_max_age_seconds`` is not the caller's to give: the PDP adds it."""
    ctx: dict[str, Any] = {
        "mfa_age_seconds": mfa_age_seconds,
        "device": uid(_DEVICE, device),
        "device_managed": device_managed,
        "source_ip": str(source_ip),
        "break_glass": break_glass,
    }
    if now is not None:
        ctx["now"] = cedar_datetime(now)
    if grant is not None:
        ctx["grant"] = uid(_GRANT, grant)
    return ctx


# ---------------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request.

    ``determining_policies`` are the ``@id`` of the policies that determined the decision: the
    permits that allowed it, or the forbids that denied it (empty when nothing permitted: deny by
    default). ``errors`` are Cedar's (or the PDP's) errors; any error means a denial. ``reasons``
    are the same facts in words for people. ``break_glass`` is true when an allow came from a
    break-glass permit: the caller must raise an alert.
    """

    allowed: bool
    determining_policies: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    break_glass: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for the audit log."""
        return {
            "allowed": self.allowed,
            "determining_policies": list(self.determining_policies),
            "errors": list(self.errors),
            "reasons": list(self.reasons),
            "break_glass": self.break_glass,
        }


def explain(decision: Decision) -> str:
    """A few lines for people: the verdict, each determining policy and why, each error."""
    if decision.allowed:
        head = "ALLOWED under break-glass: alert security" if decision.break_glass else "ALLOWED"
    else:
        head = "DENIED"
    lines = [head]
    lines += [
        f"  {pid}: {why}" for pid, why in zip(decision.determining_policies, decision.reasons, strict=False)
    ]
    lines += [f"  {why}" for why in decision.reasons[len(decision.determining_policies) :]]
    lines += [f"  error: {e}" for e in decision.errors]
    return "\n".join(lines)


class PolicyDeniedError(DeniedError):
    """:meth:`PDP.authorize` denied the request; ``decision`` holds the whole answer."""

    def __init__(self, decision: Decision) -> None:
        named = ", ".join(decision.determining_policies) or "no permit"
        super().__init__(
            "access denied: " + "; ".join(decision.reasons),
            hint=f"determined by {named}; see docs/access-policy.md",
        )
        self.decision = decision


def _denied(*errors: str) -> Decision:
    errs = tuple(_clip(e) for e in errors)
    return Decision(False, (), errs, tuple(f"the request could not be evaluated: {e}" for e in errs))


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


# ---------------------------------------------------------------------------------------------------
# Policy sets
# ---------------------------------------------------------------------------------------------------


def packaged_policies_dir() -> Traversable:
    """The directory of the packaged policy set and schema."""
    return resources.files("gpaisec.access").joinpath("policies")


_DEFAULT_POLICY_FILE = "default.cedar"
_SCHEMA_FILE = "schema.cedarschema"


@dataclass(frozen=True, eq=False)
class PolicySet:
    """Cedar policies validated against a Cedar schema. Build with :meth:`load` or :meth:`from_text`.

    ``policy_ids`` are the ``@id`` annotations in file order; ``reasons`` maps each to its
    ``@reason`` text and ``alerts`` to its ``@alert`` value, where the policy has one.
    """

    source: str
    text: str
    schema_text: str
    policy_ids: tuple[str, ...]
    reasons: Mapping[str, str]
    alerts: Mapping[str, str]
    _by_cedar_id: Mapping[str, str] = field(repr=False)
    _cedar: Any = field(repr=False)
    _schema: Any = field(repr=False)
    _parse_entities: Callable[[str], EntitySet] = field(repr=False)
    _memo: _Memo | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.policy_ids)

    @classmethod
    def load(cls, path: str | Path | None = None, *, schema: str | Path | None = None) -> PolicySet:
        """Load a policy set.

        No ``path``: the packaged set (cached). A file: its policies. A directory: the policies of
        every ``*.cedar`` file in it, by name. The schema is ``schema`` if given, else the directory's
        (or the file's sibling) ``schema.cedarschema`` if there is one, else the packaged schema.
        Raises :class:`ConfigError` with Cedar's diagnostics if anything does not parse or validate.
        """
        if path is None and schema is None:
            return _packaged_policy_set()
        # 1. Read the policy text and the schema text.
        schema_text = _read(Path(schema)) if schema is not None else None
        if path is None:
            text = packaged_policies_dir().joinpath(_DEFAULT_POLICY_FILE).read_text(encoding="utf-8")
            source = "packaged policies"
        else:
            p = Path(path)
            if p.is_dir():
                files = sorted(p.glob("*.cedar"))
                if not files:
                    raise ConfigError(
                        f"{p}: no *.cedar policy files",
                        hint="point at a .cedar file or a directory holding some",
                    )
                text = "\n".join(_read(f) for f in files)
                sibling = p / _SCHEMA_FILE
            else:
                text = _read(p)
                sibling = p.parent / _SCHEMA_FILE
            if schema_text is None and sibling.is_file():
                schema_text = _read(sibling)
            source = str(p)
        return cls.from_text(text, schema_text=schema_text, source=source)

    @classmethod
    def from_text(cls, text: str, *, schema_text: str | None = None, source: str = "<text>") -> PolicySet:
        """Parse and validate Cedar policy text (against the packaged schema unless one is given)."""
        if schema_text is None:
            schema_text = _packaged_schema_text()
        hint = "see docs/access-policy.md (writing a custom policy)"
        # 2. Parse the schema.
        try:
            schema = cedarpy.Schema.from_str(schema_text)
        except ValueError as exc:
            raise ConfigError(f"{source}: the Cedar schema does not parse: {exc}", hint=hint) from exc
        # 3. Parse the policies.
        try:
            cedar = cedarpy.PolicySet.from_str(text)
            est = json.loads(cedarpy.policies_to_json_str(text))
        except ValueError as exc:
            raise ConfigError(f"{source}: the policies do not parse: {exc}", hint=hint) from exc
        if est.get("templates"):
            raise ConfigError(f"{source}: policy templates are not supported", hint="write static policies")
        # 4. Validate the policies against the schema (Cedar's strict validation).
        result = cedarpy.validate_policies(text, schema)
        if not result.validation_passed:
            names = result.id_annotations_by_policy_id
            problems = "; ".join(
                _POLICY_REF.sub(lambda m: f"`{names.get(m[1]) or m[1]}`", e.error) for e in result.errors
            )
            raise ConfigError(
                f"{source}: the policies do not validate against the schema: {problems}", hint=hint
            )
        # 5. Every policy names itself with a unique @id; collect @reason and @alert.
        by_cedar_id: dict[str, str] = {}
        reasons: dict[str, str] = {}
        alerts: dict[str, str] = {}
        static = est.get("staticPolicies", {})
        for cedar_id in sorted(static, key=lambda s: int(s[6:]) if s[6:].isdigit() else -1):
            notes = static[cedar_id].get("annotations") or {}
            pid = notes.get("id")
            if not pid:
                raise ConfigError(
                    f"{source}: policy {cedar_id} has no @id annotation",
                    hint='add @id("...") to every policy',
                )
            if pid in reasons:
                raise ConfigError(
                    f"{source}: two policies share @id {pid!r}", hint="give each policy its own @id"
                )
            by_cedar_id[cedar_id] = pid
            reasons[pid] = notes.get("reason") or pid
            if notes.get("alert"):
                alerts[pid] = notes["alert"]
        if not by_cedar_id:
            _log.warning("%s: the policy set is empty: every request will be denied", source)
        return cls(
            source=source,
            text=text,
            schema_text=schema_text,
            policy_ids=tuple(by_cedar_id.values()),
            reasons=MappingProxyType(reasons),
            alerts=MappingProxyType(alerts),
            _by_cedar_id=MappingProxyType(by_cedar_id),
            _cedar=cedar,
            _schema=schema,
            _parse_entities=functools.lru_cache(maxsize=_ENTITY_CACHE_SIZE)(
                functools.partial(_parse_entity_text, schema=schema, schema_text=schema_text)
            ),
            _memo=_Memo(literals) if (literals := memo_literals(text)) is not None else None,
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="check the path and its permissions") from exc


@functools.cache
def _packaged_schema_text() -> str:
    return packaged_policies_dir().joinpath(_SCHEMA_FILE).read_text(encoding="utf-8")


@functools.cache
def _packaged_policy_set() -> PolicySet:
    text = packaged_policies_dir().joinpath(_DEFAULT_POLICY_FILE).read_text(encoding="utf-8")
    return PolicySet.from_text(text, source="packaged policies")


# ---------------------------------------------------------------------------------------------------
# Entities
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EntitySet:
    """Entities parsed and checked against a schema once, for many decisions (see :meth:`PDP.entities`).

    For a stable world plus a small per-request part, keep the world and call :meth:`with_added`.
    """

    schema_text: str = field(repr=False)
    _handle: Any = field(repr=False)
    _schema: Any = field(repr=False)
    # Every datetime (as epoch ms) and integer in the entities' attributes, for the decision memo;
    # None if a value looked like a time but did not parse (then nothing is memoised over this set).
    _constants: tuple[frozenset[int], frozenset[int]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self._handle)

    def with_added(self, entities: Iterable[Mapping[str, Any]]) -> EntitySet:
        """A new set: these entities plus ``entities``, checked against the schema (base not re-parsed)."""
        added = list(entities)
        try:
            handle = self._handle.with_added_json_str(json.dumps(added), self._schema)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"entities rejected: {_clip(str(exc))}", hint="build them with the *_entity helpers"
            ) from exc
        mine, theirs = self._constants, _constants(added)
        both = None if mine is None or theirs is None else (mine[0] | theirs[0], mine[1] | theirs[1])
        return EntitySet(self.schema_text, handle, self._schema, both)


def _parse_entity_text(text: str, schema: Any, schema_text: str) -> EntitySet:
    try:
        handle = cedarpy.Entities.from_json_str(text, schema)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"entities rejected: {_clip(str(exc))}", hint="build them with the *_entity helpers"
        ) from exc
    return EntitySet(schema_text, handle, schema, _constants(json.loads(text)))


# ---------------------------------------------------------------------------------------------------
# The decision memo: Cedar's answer reused while no input it can depend on has changed
# ---------------------------------------------------------------------------------------------------
#
# A request's inputs are the policies, the entities, principal, action, resource and the context.
# Two context fields change on every request: ``now`` and ``mfa_age_seconds``. A policy set may be
# memoised only if it uses them in nothing but comparisons (< <= > >= == !=) with an attribute path
# (``principal.x``, ``context.grant.expires``) or an integer literal, never in arithmetic, a call or
# a set. Then the decision, as a function of ``now`` (and of the MFA age), can change only where
# ``now`` crosses a value some path can hold: a datetime among the entities' or the context's values
# (v or v + 1 ms, for < and <=). The memo stores each decision with the interval between the
# breakpoints around the ``now`` (and the MFA age) it was computed at, and reuses it only for a
# request equal in everything else whose ``now`` and MFA age fall in the same intervals. Anything
# not understood (a policy using them otherwise, a value that looks like a time but does not parse,
# an error in the decision) is not memoised, and Cedar decides.

_TIME_FIELDS = ("now", "mfa_age_seconds")
_STRINGS_AND_COMMENTS = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*')
_OPERAND = r"(?:-?\d+|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
_BEFORE = r"(?:(?<=[({])|(?<=&&)|(?<=\|\|)|(?<=\bif)|(?<=\bthen)|(?<=\belse)|^)\s*"
_AFTER = r"(?=\s*(?:&&|\|\||\)|\}|;|\bthen\b|\belse\b|$))"
_CMP = r"\s*(?:<=|>=|==|!=|<|>)\s*"
_TIME_VAR = r"context\.(?:now|mfa_age_seconds)"
_COMPARISON = re.compile(
    rf"{_BEFORE}(?:(?P<a>{_TIME_VAR}){_CMP}(?P<x>{_OPERAND}){_AFTER}"
    rf"|(?P<y>{_OPERAND}){_CMP}(?P<b>{_TIME_VAR}){_AFTER})",
    re.M,
)
_TIME_USE = re.compile(rf"\b{_TIME_VAR}\b")
_CONTEXT = re.compile(r"\bcontext\b(?!\s*\.\s*[A-Za-z_]|\s+has\b)")
_LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MEMO_SIZE = 4096


def memo_literals(text: str) -> frozenset[int] | None:
    """The integer literals ``now`` and the MFA age are compared with, if the policy text uses them
    only in comparisons the memo understands; None if it does not (then nothing is memoised)."""
    code = _STRINGS_AND_COMMENTS.sub(lambda m: '""' if m[0].startswith('"') else "", text)
    if _CONTEXT.search(code):  # the whole context record used as a value: not understood
        return None
    covered: set[int] = set()
    literals: set[int] = set()
    for m in _COMPARISON.finditer(code):
        covered.add(m.start("a") if m["a"] else m.start("b"))
        operand = m["x"] or m["y"]
        if operand.lstrip("-").isdigit():
            literals.add(int(operand))
    if any(m.start() not in covered for m in _TIME_USE.finditer(code)):
        return None
    return frozenset(literals)


def _constants(value: Any) -> tuple[frozenset[int], frozenset[int]] | None:
    """(datetimes as epoch ms, integers) anywhere in ``value``; None if a time-like string fails."""
    times: set[int] = set()
    ints: set[int] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int):
            ints.add(v)
        elif isinstance(v, str) and _LOOKS_LIKE_TIME.match(v):
            ms = _epoch_ms(v)
            if ms is None:
                return None
            times.add(ms)
    return frozenset(times), frozenset(ints)


def _epoch_ms(text: str) -> int | None:
    try:
        t = _parse_time(text)
    except ValueError:
        return None
    return (t - _EPOCH) // _MS


def _interval(value: int, points: Iterable[int]) -> tuple[int, int]:
    """The interval [lo, hi) around ``value`` in which no comparison with a point changes truth."""
    lo, hi = -(2**63), 2**63
    for p in points:
        for b in (p, p + 1):
            if b <= value:
                lo = max(lo, b)
            else:
                hi = min(hi, b)
    return lo, hi


class _Memo:
    """Decisions by request (all but ``now`` and the MFA age), each valid over two intervals."""

    def __init__(self, literals: frozenset[int]) -> None:
        self._literals = literals
        self._lock = threading.Lock()
        self._store: OrderedDict[tuple[Any, ...], list[tuple[int, int, int, int, Decision]]] = OrderedDict()

    def key(self, world: EntitySet, request: Mapping[str, Any]) -> tuple[tuple[Any, ...], int, int] | None:
        ctx = request["context"]
        now, mfa = (
            _epoch_ms(ctx["now"]) if isinstance(ctx.get("now"), str) else None,
            ctx.get("mfa_age_seconds"),
        )
        if now is None or world._constants is None or isinstance(mfa, bool) or not isinstance(mfa, int):
            return None
        rest = json.dumps({k: v for k, v in ctx.items() if k not in _TIME_FIELDS}, sort_keys=True)
        p, r = request["principal"], request["resource"]
        return (world, p["type"], p["id"], request["action"]["id"], r["type"], r["id"], rest), now, mfa

    def get(self, key: tuple[tuple[Any, ...], int, int]) -> Decision | None:
        k, now, mfa = key
        with self._lock:
            for n_lo, n_hi, m_lo, m_hi, decision in self._store.get(k, ()):
                if n_lo <= now < n_hi and m_lo <= mfa < m_hi:
                    self._store.move_to_end(k)
                    return decision
        return None

    def put(
        self, key: tuple[tuple[Any, ...], int, int], world: EntitySet, ctx: Mapping[str, Any], d: Decision
    ) -> None:
        k, now, mfa = key
        assert world._constants is not None
        found = _constants({n: v for n, v in ctx.items() if n not in _TIME_FIELDS})
        if found is None:
            return
        times = world._constants[0] | found[0]
        ints = world._constants[1] | found[1] | self._literals
        n_lo, n_hi = _interval(now, times)
        m_lo, m_hi = _interval(mfa, ints)
        with self._lock:
            entries = self._store.setdefault(k, [])
            entries.append((n_lo, n_hi, m_lo, m_hi, d))
            del entries[:-8]
            self._store.move_to_end(k)
            while len(self._store) > _MEMO_SIZE:
                self._store.popitem(last=False)


# ---------------------------------------------------------------------------------------------------
# The decision point
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a batch (:meth:`PDP.decide_batch`)."""

    principal: EntityUid
    action: str
    resource: EntityUid
    context: Mapping[str, Any]


class PDP:
    """Decides requests against one :class:`PolicySet`.

    ``mfa_max_age_seconds`` is put in every request's context (the policies compare the MFA age
    with it); callers may not set it. Thread-safe: the parsed policies, schema and entity sets are
    immutable.
    """

    def __init__(
        self,
        policies: PolicySet,
        *,
        mfa_max_age_seconds: int = DEFAULT_MFA_MAX_AGE_SECONDS,
        memo: bool = True,
    ) -> None:
        if isinstance(mfa_max_age_seconds, bool) or not isinstance(mfa_max_age_seconds, int):
            raise ConfigError(f"mfa_max_age_seconds must be an integer, not {mfa_max_age_seconds!r}")
        if not 0 < mfa_max_age_seconds <= 7 * 24 * 3600:
            raise ConfigError(
                f"mfa_max_age_seconds {mfa_max_age_seconds} is out of range", hint="between 1 s and 7 days"
            )
        self._policies = policies
        self._max_age = mfa_max_age_seconds
        self._schema = policies._schema
        self._memo = policies._memo if memo else None

    @property
    def policies(self) -> PolicySet:
        return self._policies

    @property
    def mfa_max_age_seconds(self) -> int:
        return self._max_age

    def entities(self, entities: Iterable[Mapping[str, Any]] | str) -> EntitySet:
        """Parse and check entities (a list in Cedar's JSON form, or its text) against the schema.

        Raises :class:`InputError` naming the first entity that does not conform. Small sets (a
        request's own entities) are remembered by their JSON text, per policy set (the last
        1,024): asking again about the same principal, device, resource and grant skips the parse,
        which costs more than the decision. Only identical text matches, so nothing stale is used.
        """
        text = entities if isinstance(entities, str) else json.dumps(list(entities))
        if len(text) <= _ENTITY_CACHE_MAX_CHARS:
            return self._policies._parse_entities(text)
        return _parse_entity_text(text, self._policies._schema, self._policies.schema_text)

    def decide(
        self,
        principal: EntityUid,
        action: str,
        resource: EntityUid,
        entities: EntitySet | Iterable[Mapping[str, Any]],
        context: Mapping[str, Any],
    ) -> Decision:
        """Decide one request. Never raises for a bad request: anything wrong denies, with the error."""
        # Deciding takes these steps; any failure denies and says why (decide_batch does the same).
        try:
            # 1. Entities: an EntitySet checked against this schema, or a list parsed and checked now.
            world = self._world(entities)
            # 2. The request: references well formed, the PDP's MFA limit added to the context,
            #    ``now`` set if absent. (Cedar then validates it against the schema.)
            request = self._cedar_request(Request(principal, action, resource, context))
        except _BadRequest as exc:
            return _denied(str(exc))
        # 3. Cedar's earlier answer to this very request, if ``now`` and the MFA age have crossed
        #    none of the values the policies compare them with since (see "The decision memo").
        memo = self._memo
        key = memo.key(world, request) if memo is not None else None
        if key is not None and memo is not None and (known := memo.get(key)) is not None:
            return known
        # 4. Ask Cedar, with the pre-parsed policies, entities and schema (it validates the request).
        try:
            result = cedarpy.is_authorized(request, self._policies._cedar, world._handle, self._schema)
        except (ValueError, TypeError, KeyError) as exc:
            return _denied(f"Cedar could not evaluate the request: {exc}")
        # 5. Fail closed on any error, and name the policies that decided.
        decision = self._decision(result)
        if key is not None and memo is not None and not decision.errors:
            memo.put(key, world, request["context"], decision)
        return decision

    def authorize(
        self,
        principal: EntityUid,
        action: str,
        resource: EntityUid,
        entities: EntitySet | Iterable[Mapping[str, Any]],
        context: Mapping[str, Any],
    ) -> Decision:
        """Decide, and raise :class:`PolicyDeniedError` (a ``DeniedError``) unless allowed.

        Returns the decision when allowed: check :attr:`Decision.break_glass` and alert if set.
        """
        decision = self.decide(principal, action, resource, entities, context)
        if not decision.allowed:
            raise PolicyDeniedError(decision)
        return decision

    def decide_batch(
        self, requests: Sequence[Request], entities: EntitySet | Iterable[Mapping[str, Any]]
    ) -> list[Decision]:
        """Decide several requests against the same entities in one call into Cedar (same steps)."""
        try:
            world = self._world(entities)
        except _BadRequest as exc:
            return [_denied(str(exc))] * len(requests)
        out: list[Decision | None] = [None] * len(requests)
        cedar_requests: list[dict[str, Any]] = []
        slots: list[int] = []
        for i, req in enumerate(requests):
            try:
                cedar_requests.append(self._cedar_request(req))
                slots.append(i)
            except _BadRequest as exc:
                out[i] = _denied(str(exc))
        if cedar_requests:
            try:
                results = cedarpy.is_authorized_batch(
                    cedar_requests, self._policies._cedar, world._handle, self._schema
                )
            except (ValueError, TypeError, KeyError) as exc:
                failed = _denied(f"Cedar could not evaluate the request: {exc}")
                return [d if d is not None else failed for d in out]
            for i, result in zip(slots, results, strict=True):
                out[i] = self._decision(result)
        return [d if d is not None else _denied("not evaluated") for d in out]

    # -- internals --------------------------------------------------------------------------------

    def _world(self, entities: EntitySet | Iterable[Mapping[str, Any]]) -> EntitySet:
        if isinstance(entities, EntitySet):
            if entities.schema_text != self._policies.schema_text:
                raise _BadRequest("the entity set was checked against another schema")
            return entities
        try:
            return self.entities(entities)
        except InputError as exc:
            raise _BadRequest(exc.message) from exc

    def _cedar_request(self, req: Request) -> dict[str, Any]:
        principal, resource = _check_uid(req.principal, "principal"), _check_uid(req.resource, "resource")
        if not isinstance(req.action, str) or not req.action:
            raise _BadRequest(f"action must be a name, not {req.action!r}")
        if not isinstance(req.context, Mapping):
            raise _BadRequest("context must be a mapping")
        if _PDP_SETS in req.context:
            raise _BadRequest(f"context sets {_PDP_SETS}, which only the PDP sets")
        # Cedar validates the request against the schema: the action exists, applies to these
        # principal and resource types, and the context has the declared fields and types.
        ctx = {name: _context_value(name, value) for name, value in req.context.items()}
        ctx[_PDP_SETS] = self._max_age
        if "now" not in ctx:
            ctx["now"] = cedar_datetime(datetime.now(UTC))
        return {
            "principal": principal,
            "action": {"type": _ACTION, "id": req.action},
            "resource": resource,
            "context": ctx,
        }

    def _decision(self, result: Any) -> Decision:
        diagnostics = result.diagnostics
        names = self._policies._by_cedar_id
        ids = tuple(sorted({names.get(r, r) for r in diagnostics.reasons}))
        errors = tuple(
            _clip(_POLICY_REF.sub(lambda m: f"`{names.get(m[1], m[1])}`", e)) for e in diagnostics.errors
        )
        allowed = bool(result.allowed) and not errors
        if errors and result.allowed:
            ids = ()  # the permits that matched do not determine a fail-closed denial
        reasons = tuple(self._policies.reasons.get(i, i) for i in ids)
        if errors:
            reasons += ("evaluation errors: denied (fail closed)",)
        elif not ids:
            reasons = (_DENY_BY_DEFAULT,)
        alerts = self._policies.alerts
        break_glass = allowed and any(alerts.get(i) == ALERT_BREAK_GLASS for i in ids)
        return Decision(allowed, ids, errors, reasons, break_glass)


class _BadRequest(Exception):
    """A request the PDP refuses before asking Cedar (internal: becomes a denial)."""


def _check_uid(value: Any, what: str) -> dict[str, str]:
    if isinstance(value, Mapping):
        t, i = value.get("type"), value.get("id")
        if isinstance(t, str) and isinstance(i, str) and t:
            return {"type": t, "id": i}
    raise _BadRequest(f"{what} must be an entity reference {{'type': ..., 'id': ...}}, not {value!r}")


def _context_value(name: str, value: Any) -> Any:
    """Times and addresses given as Python objects, in the text form Cedar parses."""
    if isinstance(value, datetime):
        try:
            return cedar_datetime(value)
        except InputError as exc:
            raise _BadRequest(f"context field {name}: {exc.message}") from exc
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------------
# Reference evaluation of the packaged rules in plain Python
# ---------------------------------------------------------------------------------------------------


def evaluate_plain(
    principal: EntityUid,
    action: str,
    resource: EntityUid,
    entities: Iterable[Mapping[str, Any]] | Mapping[tuple[str, str], Mapping[str, Any]],
    context: Mapping[str, Any],
    *,
    mfa_max_age_seconds: int = DEFAULT_MFA_MAX_AGE_SECONDS,
) -> Decision:
    """Evaluate the packaged policy set (``default.cedar``) in plain Python, on the same inputs.

    A reference, not a decision point: the tests check that Cedar decides as this does (same
    verdict, same determining policies) on random requests, and ``bench/authz.py`` measures it as
    the baseline. ``entities`` is the list given to :meth:`PDP.decide` or an index of it by
    ``(type, id)``. Reasons are the policies' @id; missing data is an error and denies.
    """
    try:
        index = entities if isinstance(entities, Mapping) else _index(entities)
        ids, permitted = _plain_rules(principal, action, resource, index, context, mfa_max_age_seconds)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return _denied(f"plain evaluation failed: {exc!r}")
    if ids:
        return Decision(False, ids, (), ids)
    if permitted:
        return Decision(True, permitted, (), permitted, "permit-break-glass" in permitted)
    return Decision(False, (), (), (_DENY_BY_DEFAULT,))


def _index(entities: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(e["uid"]["type"], e["uid"]["id"]): e for e in entities}


def _ref(value: Any) -> tuple[str, str]:
    ref = value.get("__entity", value)
    return (ref["type"], ref["id"])


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, Mapping):
        value = value["__extn"]["arg"]
    return _parse_time(value)


@functools.lru_cache(maxsize=4096)
def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _plain_rules(
    principal: EntityUid,
    action: str,
    resource: EntityUid,
    ent: Mapping[tuple[str, str], Mapping[str, Any]],
    ctx: Mapping[str, Any],
    max_age: int,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(forbids that apply, permits that apply), each in @id order, as default.cedar states them."""
    p_type, r_type = principal["type"], resource["type"]
    p_key, r_key = (p_type, principal["id"]), (r_type, resource["id"])
    is_person, is_sa = p_type == _PERSON, p_type == _SERVICE_ACCOUNT
    p = ent[p_key]
    pa = p["attrs"]
    roles = {_ref(x)[1] for x in p.get("parents", ()) if _ref(x)[0] == _ROLE} if is_person else set()
    now = _time(ctx["now"])
    mfa = ctx["mfa_age_seconds"]
    dev = ent[_ref(ctx["device"])]["attrs"]
    device_managed = ctx["device_managed"] and dev["managed"]
    encrypted = dev["disk_encrypted"]
    break_glass = ctx["break_glass"]
    weights = action in ("read", "write", "export")

    released = unreleased = False
    version_key: tuple[str, str] | None = None
    if r_type == _MODEL_VERSION:
        version_key = r_key
    elif r_type == _LOCATION:
        version_key = _ref(ent[r_key]["attrs"]["version"])
    if version_key is not None:
        released = bool(ent[version_key]["attrs"]["released"])
        unreleased = not released
    released_read = action == "read" and released

    def human_ok() -> bool:
        return (
            not pa["shared"]
            and 0 <= mfa <= max_age
            and now < _time(pa["background_check_valid_until"])
            and now < _time(pa["insider_training_valid_until"])
        )

    def scoped() -> bool:
        return f"weights:{action}" in pa["scopes"] if weights else False

    g = ent[_ref(ctx["grant"])]["attrs"] if "grant" in ctx else None

    def grant_resource_ok(g: Mapping[str, Any]) -> bool:
        if r_type == _MODEL_VERSION:
            return _ref(g["version"]) == r_key and "location" not in g
        # A copy: the grant for its version, unless the grant is narrowed to another copy.
        return _ref(g["version"]) == version_key and ("location" not in g or _ref(g["location"]) == r_key)

    def grant_principal_ok(g: Mapping[str, Any]) -> bool:
        if is_person:
            return _ref(g["requester"]) == p_key and "service_account" not in g
        return "service_account" in g and _ref(g["service_account"]) == p_key

    forbids: list[str] = []
    if not device_managed:
        forbids.append("forbid-unmanaged-device")
    if not encrypted and not released_read:
        forbids.append("forbid-unencrypted-disk")
    if is_person and not released_read:
        if pa["shared"]:
            forbids.append("forbid-shared-account")
        if mfa < 0 or mfa > max_age:
            forbids.append("forbid-stale-mfa")
        if now >= _time(pa["background_check_valid_until"]):
            forbids.append("forbid-expired-background-check")
        if now >= _time(pa["insider_training_valid_until"]):
            forbids.append("forbid-lapsed-training")
    if is_sa and weights and not scoped() and not released_read:
        forbids.append("forbid-service-account-scope")
    if weights and unreleased:
        if g is None:
            if not (break_glass and "break_glass" in roles):
                forbids.append("forbid-no-grant")
        else:
            requester = _ref(g["requester"])
            approvers = {_ref(a) for a in g["approvers"]}
            if g["state"] != "active":
                forbids.append("forbid-grant-inactive")
            if now < _time(g["not_before"]):
                forbids.append("forbid-grant-not-yet-valid")
            if now >= _time(g["expires"]):
                forbids.append("forbid-grant-expired")
            if g["approvals"] < 2:
                forbids.append("forbid-too-few-approvals")
            if requester in approvers:
                forbids.append("forbid-self-approval")
            if _ref(g["action"]) != (_ACTION, action):
                forbids.append("forbid-grant-wrong-action")
            if not grant_resource_ok(g):
                forbids.append("forbid-grant-wrong-resource")
            if not grant_principal_ok(g):
                forbids.append("forbid-grant-wrong-principal")
    if break_glass and "break_glass" not in roles:
        forbids.append("forbid-break-glass-without-role")
    if break_glass and action == "export":
        forbids.append("forbid-break-glass-export")
    if (
        action == "approve"
        and is_person
        and r_type == _GRANT
        and _ref(ent[r_key]["attrs"]["requester"]) == p_key
    ):
        forbids.append("forbid-approve-own-grant")
    if forbids:
        return tuple(sorted(forbids)), ()

    permits: list[str] = []
    device_ok = device_managed and encrypted
    if released_read and device_managed:
        permits.append("permit-released-read")
    if weights and unreleased and device_ok and g is not None:
        grant_ok = (
            g["state"] == "active"
            and _ref(g["action"]) == (_ACTION, action)
            and _time(g["not_before"]) <= now < _time(g["expires"])
            and g["approvals"] >= 2
            and _ref(g["requester"]) not in {_ref(a) for a in g["approvers"]}
            and grant_resource_ok(g)
        )
        who_ok = (is_person and grant_principal_ok(g) and human_ok()) or (
            is_sa and grant_principal_ok(g) and scoped()
        )
        if grant_ok and who_ok:
            permits.append("permit-unreleased-with-grant")
    if (
        is_person
        and "break_glass" in roles
        and action in ("break_glass", "read", "write")
        and r_type in _WEIGHTS
        and break_glass
        and device_ok
        and human_ok()
    ):
        permits.append("permit-break-glass")
    if (
        is_person
        and action == "approve"
        and r_type == _GRANT
        and "approver" in roles
        and device_ok
        and human_ok()
    ):
        ga = ent[r_key]["attrs"]
        if ga["state"] == "pending" and _ref(ga["requester"]) != p_key:
            permits.append("permit-approve")
    if (
        is_person
        and action == "review"
        and r_type == _GRANT
        and roles & {"reviewer", "approver"}
        and device_ok
        and not pa["shared"]
    ):
        permits.append("permit-review")
    return (), tuple(sorted(permits))
