"""The policy decision point: the packaged policies allow exactly what docs/access-policy.md says.

Each denial is checked for the @id of the policy that determined it. A property test draws random
requests (people and service accounts, devices, MFA ages, grants right and wrong) and checks that
Cedar decides as the plain-Python restatement of the rules does, and that nothing reaches
unreleased weights without a valid grant unless it is flagged as break-glass.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpaisec.access import pdp as pdp_module
from gpaisec.access.pdp import (
    PDP,
    Decision,
    EntitySet,
    PolicyDeniedError,
    PolicySet,
    Request,
    cedar_datetime,
    device_entity,
    evaluate_plain,
    explain,
    grant_entity,
    location_entity,
    model_version_entity,
    person_entity,
    request_context,
    service_account_entity,
    uid,
)
from gpaisec.errors import ConfigError, DeniedError, InputError

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
YEAR = timedelta(days=365)
PACKAGED_SCHEMA = (Path(pdp_module.__file__).parent / "policies" / "schema.cedarschema").read_text()


# --- a world where alice may read version m1 ---------------------------------------------------------


@dataclasses.dataclass
class World:
    """The allow path; each test changes one thing."""

    shared: bool = False
    background_check: datetime = NOW + YEAR
    training: datetime = NOW + YEAR
    roles: tuple[str, ...] = ()
    managed: bool = True
    encrypted: bool = True
    released: bool = False
    grant: bool = True
    requester: str = "alice"
    approvers: tuple[str, ...] = ("bob", "carol")
    grant_action: str = "read"
    grant_version: str = "m1"
    grant_location: str | None = None
    grant_service_account: str | None = None
    not_before: datetime = NOW - DAY
    expires: datetime = NOW + DAY
    state: str = "active"
    device_managed: bool = True
    mfa_age: int = 60
    break_glass: bool = False
    scopes: tuple[str, ...] = ("weights:read",)

    def entities(self) -> list[dict[str, Any]]:
        out = [
            person_entity(
                "alice",
                shared=self.shared,
                background_check_valid_until=self.background_check,
                insider_training_valid_until=self.training,
                roles=self.roles,
            ),
            person_entity(
                "bob",
                background_check_valid_until=NOW + YEAR,
                insider_training_valid_until=NOW + YEAR,
                roles=("approver",),
            ),
            service_account_entity("trainer", scopes=self.scopes),
            device_entity("laptop-1", managed=self.managed, disk_encrypted=self.encrypted, edr=True),
            model_version_entity("m1", model="frontier", released=self.released),
            model_version_entity("m2", model="frontier", released=False),
            location_entity("s3-m1", version="m1"),
            location_entity("s3-m1-backup", version="m1"),
            location_entity("s3-m2", version="m2"),
        ]
        if self.grant:
            out.append(
                grant_entity(
                    "g1",
                    requester=self.requester,
                    version=self.grant_version,
                    location=self.grant_location,
                    service_account=self.grant_service_account,
                    action=self.grant_action,
                    approvers=self.approvers,
                    not_before=self.not_before,
                    expires=self.expires,
                    state=self.state,
                )
            )
        return out

    def context(self) -> dict[str, Any]:
        return request_context(
            now=NOW,
            device="laptop-1",
            device_managed=self.device_managed,
            mfa_age_seconds=self.mfa_age,
            source_ip="10.1.2.3",
            grant="g1" if self.grant else None,
            break_glass=self.break_glass,
        )


ALICE = uid("Person", "alice")
BOB = uid("Person", "bob")
TRAINER = uid("ServiceAccount", "trainer")
M1 = uid("ModelVersion", "m1")
S3_M1 = uid("Location", "s3-m1")


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return PolicySet.load()


@pytest.fixture(scope="module")
def pdp(policies: PolicySet) -> PDP:
    return PDP(policies)


def decide(
    pdp: PDP,
    world: World,
    principal: dict[str, str] = ALICE,
    action: str = "read",
    resource: dict[str, str] = M1,
) -> Decision:
    return pdp.decide(principal, action, resource, world.entities(), world.context())


# --- the allow path and each way to fail ---------------------------------------------------------------


def test_allow_path(pdp: PDP) -> None:
    d = decide(pdp, World())
    assert d.allowed
    assert d.determining_policies == ("permit-unreleased-with-grant",)
    assert d.errors == ()
    assert not d.break_glass
    assert "approved by two other people" in d.reasons[0]
    assert pdp.authorize(ALICE, "read", M1, World().entities(), World().context()) == d
    assert evaluate_plain(ALICE, "read", M1, World().entities(), World().context()).allowed


DENIALS = [
    ("no grant", World(grant=False), "forbid-no-grant"),
    ("one approval only", World(approvers=("bob",)), "forbid-too-few-approvals"),
    ("self-approval counted", World(approvers=("alice", "bob")), "forbid-self-approval"),
    ("expired grant", World(expires=NOW - timedelta(seconds=1)), "forbid-grant-expired"),
    ("grant ends now (half-open)", World(expires=NOW), "forbid-grant-expired"),
    ("grant not yet valid", World(not_before=NOW + timedelta(seconds=1)), "forbid-grant-not-yet-valid"),
    ("pending grant", World(state="pending"), "forbid-grant-inactive"),
    ("revoked grant", World(state="revoked"), "forbid-grant-inactive"),
    ("unmanaged device (inventory)", World(managed=False), "forbid-unmanaged-device"),
    ("unmanaged device (session)", World(device_managed=False), "forbid-unmanaged-device"),
    ("unencrypted disk", World(encrypted=False), "forbid-unencrypted-disk"),
    ("stale MFA", World(mfa_age=12 * 3600 + 1), "forbid-stale-mfa"),
    ("MFA age negative", World(mfa_age=-5), "forbid-stale-mfa"),
    ("lapsed background check", World(background_check=NOW - DAY), "forbid-expired-background-check"),
    ("background check ends now", World(background_check=NOW), "forbid-expired-background-check"),
    ("lapsed training", World(training=NOW - DAY), "forbid-lapsed-training"),
    ("shared account", World(shared=True), "forbid-shared-account"),
    ("wrong action for the grant", World(grant_action="write"), "forbid-grant-wrong-action"),
    ("grant for another version", World(grant_version="m2"), "forbid-grant-wrong-resource"),
    ("grant for one location only", World(grant_location="s3-m1"), "forbid-grant-wrong-resource"),
    (
        "grant for somebody else",
        World(requester="bob", approvers=("carol", "dave")),
        "forbid-grant-wrong-principal",
    ),
    ("grant of a service account", World(grant_service_account="trainer"), "forbid-grant-wrong-principal"),
    ("break-glass flag without the role", World(break_glass=True), "forbid-break-glass-without-role"),
]


@pytest.mark.parametrize(("world", "policy"), [(w, p) for _, w, p in DENIALS], ids=[n for n, _, _ in DENIALS])
def test_denied_naming_the_policy(pdp: PDP, world: World, policy: str) -> None:
    d = decide(pdp, world)
    assert not d.allowed
    assert policy in d.determining_policies
    assert d.errors == ()
    assert pdp.policies.reasons[policy] in d.reasons
    with pytest.raises(PolicyDeniedError) as info:
        pdp.authorize(ALICE, "read", M1, world.entities(), world.context())
    assert isinstance(info.value, DeniedError)
    assert info.value.decision == d
    assert pdp.policies.reasons[policy] in info.value.message
    assert policy in (info.value.hint or "")
    plain = evaluate_plain(ALICE, "read", M1, world.entities(), world.context())
    assert (plain.allowed, plain.determining_policies) == (False, d.determining_policies)


def test_mfa_exactly_at_the_limit_is_fresh(pdp: PDP) -> None:
    assert decide(pdp, World(mfa_age=12 * 3600)).allowed


def test_mfa_limit_is_configurable(policies: PolicySet) -> None:
    strict = PDP(policies, mfa_max_age_seconds=300)
    assert strict.mfa_max_age_seconds == 300
    assert decide(strict, World(mfa_age=300)).allowed
    d = decide(strict, World(mfa_age=301))
    assert d.determining_policies == ("forbid-stale-mfa",)


@pytest.mark.parametrize("bad", [0, -1, 8 * 24 * 3600, True, "3600"])
def test_mfa_limit_out_of_range(policies: PolicySet, bad: Any) -> None:
    with pytest.raises(ConfigError):
        PDP(policies, mfa_max_age_seconds=bad)


def test_caller_cannot_set_the_mfa_limit(pdp: PDP) -> None:
    ctx = World().context() | {"mfa_max_age_seconds": 10**9}
    d = pdp.decide(ALICE, "read", M1, World().entities(), ctx)
    assert not d.allowed
    assert "only the PDP sets" in d.errors[0]


# --- released weights, locations, service accounts --------------------------------------------------------


def test_released_version_readable_without_grant(pdp: PDP) -> None:
    world = World(released=True, grant=False, training=NOW - DAY, mfa_age=10**6, encrypted=False)
    d = decide(pdp, world)
    assert d.allowed
    assert d.determining_policies == ("permit-released-read",)
    sa = decide(pdp, dataclasses.replace(world, scopes=()), principal=TRAINER)
    assert sa.allowed


def test_released_version_needs_a_managed_device(pdp: PDP) -> None:
    d = decide(pdp, World(released=True, grant=False, device_managed=False))
    assert d.determining_policies == ("forbid-unmanaged-device",)


def test_released_version_is_not_writable_by_default(pdp: PDP) -> None:
    d = decide(pdp, World(released=True, grant=False), action="write")
    assert not d.allowed
    assert d.determining_policies == ()
    assert "denied by default" in d.reasons[0]


def test_a_location_is_covered_by_its_own_grant_or_its_versions(pdp: PDP) -> None:
    assert decide(pdp, World(grant_location="s3-m1"), resource=S3_M1).allowed
    assert decide(pdp, World(), resource=S3_M1).allowed  # a grant for the version covers each copy
    # A grant for one copy covers neither another copy nor the version everywhere.
    for other in ("s3-m1-backup", "s3-m2"):  # another copy of the same version, a copy of another one
        d = decide(pdp, World(grant_location="s3-m1"), resource=uid("Location", other))
        assert d.determining_policies == ("forbid-grant-wrong-resource",), other
    d = decide(pdp, World(grant_location="s3-m1"))
    assert d.determining_policies == ("forbid-grant-wrong-resource",)
    d = decide(pdp, World(grant=False), resource=S3_M1)
    assert d.determining_policies == ("forbid-no-grant",)
    released = World(released=True, grant=False)
    assert decide(pdp, released, resource=S3_M1).determining_policies == ("permit-released-read",)


def test_service_account_with_scope_and_grant(pdp: PDP) -> None:
    world = World(grant_service_account="trainer")
    d = decide(pdp, world, principal=TRAINER)
    assert d.allowed, explain(d)
    # MFA, vetting and the shared flag are about people; the grant's requester is accountable.
    assert decide(pdp, dataclasses.replace(world, mfa_age=10**6), principal=TRAINER).allowed


def test_service_account_without_scope(pdp: PDP) -> None:
    d = decide(pdp, World(grant_service_account="trainer", scopes=("weights:write",)), principal=TRAINER)
    assert d.determining_policies == ("forbid-service-account-scope",)


def test_service_account_cannot_use_a_persons_grant(pdp: PDP) -> None:
    d = decide(pdp, World(), principal=TRAINER)
    assert d.determining_policies == ("forbid-grant-wrong-principal",)


def test_write_and_export_need_their_own_grant(pdp: PDP) -> None:
    for action in ("write", "export"):
        assert decide(pdp, World(grant_action=action), action=action).allowed
        d = decide(pdp, World(grant_action="read"), action=action)
        assert d.determining_policies == ("forbid-grant-wrong-action",)


# --- break-glass, approvals, reviews ---------------------------------------------------------------------


def test_break_glass_allowed_but_flagged(pdp: PDP) -> None:
    world = World(roles=("break_glass",), break_glass=True, grant=False)
    for action in ("break_glass", "read", "write"):
        d = decide(pdp, world, action=action)
        assert d.allowed, explain(d)
        assert d.break_glass
        assert d.determining_policies == ("permit-break-glass",)
        assert "alert security" in explain(d)
    plain = evaluate_plain(ALICE, "read", M1, world.entities(), world.context())
    assert plain.allowed
    assert plain.break_glass


def test_break_glass_never_exports(pdp: PDP) -> None:
    d = decide(pdp, World(roles=("break_glass",), break_glass=True, grant=False), action="export")
    assert not d.allowed
    assert "forbid-break-glass-export" in d.determining_policies


def test_break_glass_still_needs_a_vetted_person_on_a_good_device(pdp: PDP) -> None:
    base = World(roles=("break_glass",), break_glass=True, grant=False)
    for change, policy in [
        ({"training": NOW - DAY}, "forbid-lapsed-training"),
        ({"mfa_age": 10**6}, "forbid-stale-mfa"),
        ({"encrypted": False}, "forbid-unencrypted-disk"),
        ({"shared": True}, "forbid-shared-account"),
    ]:
        d = decide(pdp, dataclasses.replace(base, **change))
        assert not d.allowed
        assert not d.break_glass
        assert policy in d.determining_policies


def test_role_without_the_flag_is_ordinary(pdp: PDP) -> None:
    d = decide(pdp, World(roles=("break_glass",), grant=False))
    assert d.determining_policies == ("forbid-no-grant",)


def _pending(requester: str) -> dict[str, Any]:
    return grant_entity(
        "g-new",
        requester=requester,
        version="m1",
        action="export",
        approvers=(),
        not_before=NOW,
        expires=NOW + DAY,
        state="pending",
    )


def test_approve_someone_elses_grant(pdp: PDP) -> None:
    world = World()
    g = uid("Grant", "g-new")
    d = pdp.decide(BOB, "approve", g, [*world.entities(), _pending("alice")], world.context())
    assert d.determining_policies == ("permit-approve",)
    own = pdp.decide(BOB, "approve", g, [*world.entities(), _pending("bob")], world.context())
    assert own.determining_policies == ("forbid-approve-own-grant",)
    not_approver = pdp.decide(ALICE, "approve", g, [*world.entities(), _pending("bob")], world.context())
    assert not not_approver.allowed
    assert not_approver.determining_policies == ()


def test_review(pdp: PDP) -> None:
    world = World(roles=("reviewer",))
    d = pdp.decide(ALICE, "review", uid("Grant", "g1"), world.entities(), world.context())
    assert d.determining_policies == ("permit-review",)
    d = pdp.decide(ALICE, "review", uid("Grant", "g1"), World().entities(), world.context())
    assert not d.allowed


# --- failing closed --------------------------------------------------------------------------------------


def test_empty_policy_set_denies_everything(pdp: PDP) -> None:
    empty = PDP(PolicySet.from_text(""))
    assert len(empty.policies) == 0
    for world, action in [(World(), "read"), (World(released=True, grant=False), "read")]:
        assert decide(pdp, world, action=action).allowed
        d = decide(empty, world, action=action)
        assert not d.allowed
        assert d.determining_policies == ()
        assert "denied by default" in d.reasons[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("permit (principal, action, resource", "do not parse"),
        (
            '@id("x") permit (principal, action, resource) when { principal.nope };',
            "for policy `x`, attribute `nope`",
        ),
        ('@id("x") permit (principal, action, resource) when { context.now > 3 };', "do not validate"),
        ("permit (principal, action, resource);", "no @id"),
        (
            '@id("x") permit (principal, action, resource);\n@id("x") forbid (principal, action, resource);',
            "share",
        ),
        ('@id("t") permit (principal == ?principal, action, resource);', "templates"),
        ('@id("x") permit (principal, action == Gpaisec::Action::"fly", resource);', "do not validate"),
    ],
)
def test_invalid_policy_text_is_a_config_error(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        PolicySet.from_text(text)
    assert expected in info.value.message


def test_invalid_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="schema does not parse"):
        PolicySet.from_text("", schema_text="namespace {")


def test_load_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        PolicySet.load(tmp_path / "nope.cedar")
    with pytest.raises(ConfigError, match="no \\*.cedar"):
        PolicySet.load(tmp_path)


def test_load_custom_directory(tmp_path: Path, pdp: PDP) -> None:
    (tmp_path / "10-released.cedar").write_text(
        '@id("released") @reason("released weights")\n'
        'permit (principal, action == Gpaisec::Action::"read", resource is Gpaisec::ModelVersion)\n'
        "when { resource.released };\n"
    )
    (tmp_path / "20-edr.cedar").write_text(
        '@id("forbid-no-edr") @reason("the device runs no EDR agent")\n'
        "forbid (principal, action, resource) unless { context.device.edr };\n"
    )
    custom = PolicySet.load(tmp_path)
    assert custom.policy_ids == ("released", "forbid-no-edr")
    assert custom.source == str(tmp_path)
    d = decide(PDP(custom), World(released=True, grant=False))
    assert d.determining_policies == ("released",)
    assert d.reasons == ("released weights",)
    assert not decide(PDP(custom), World()).allowed  # unreleased: no permit in this set


def test_packaged_set_is_cached_and_complete(policies: PolicySet) -> None:
    assert PolicySet.load() is policies
    assert policies.source == "packaged policies"
    assert len(policies) == len(set(policies.policy_ids)) == 24
    assert policies.alerts == {"permit-break-glass": "break_glass"}
    assert all(policies.reasons[i] != i for i in policies.policy_ids), "every policy has a @reason"


def test_evaluation_error_denies_even_where_cedar_allows() -> None:
    text = (
        '@id("allow-all") permit (principal, action, resource);\n'
        '@id("forbid-unmanaged") forbid (principal, action, resource) unless { context.device.managed };\n'
    )
    pdp = PDP(PolicySet.from_text(text))
    world = World()
    entities = [e for e in world.entities() if e["uid"]["type"] != "Gpaisec::Device"]
    d = pdp.decide(ALICE, "read", M1, entities, world.context())
    assert not d.allowed
    assert d.determining_policies == ()
    assert any("forbid-unmanaged" in e and "does not exist" in e for e in d.errors), d.errors
    assert "fail closed" in explain(d)
    with pytest.raises(PolicyDeniedError):
        pdp.authorize(ALICE, "read", M1, entities, world.context())


@pytest.mark.parametrize(
    ("principal", "action", "resource", "change", "message"),
    [
        (ALICE, "fly", M1, {}, "does not exist in the supplied schema"),
        (TRAINER, "approve", uid("Grant", "g1"), {}, "principal type `Gpaisec::ServiceAccount` is not valid"),
        (ALICE, "approve", M1, {}, "resource type `Gpaisec::ModelVersion` is not valid"),
        ({"id": "alice"}, "read", M1, {}, "principal must be an entity reference"),
        (ALICE, "read", M1, {"mfa_age_seconds": "60"}, "is not valid for"),
        (ALICE, "read", M1, {"mfa_age_seconds": 2**63}, "failed to build request"),
        (ALICE, "read", M1, {"device_managed": 1}, "is not valid for"),
        (ALICE, "read", M1, {"device": uid("Grant", "g1")}, "is not valid for"),
        (ALICE, "read", M1, {"source_ip": "10.1.2.300"}, "invalid IP address"),
        (ALICE, "read", M1, {"now": datetime(2026, 1, 1)}, "no time zone"),
        (ALICE, "read", M1, {"colour": "blue"}, "should not exist according to the schema"),
        (ALICE, "read", M1, {"break_glass": None}, "null"),
    ],
)
def test_bad_requests_deny_without_raising(
    pdp: PDP, principal: Any, action: str, resource: Any, change: dict[str, Any], message: str
) -> None:
    ctx = World().context() | change
    d = pdp.decide(principal, action, resource, World().entities(), ctx)
    assert not d.allowed
    assert message in d.errors[0], d.errors


def test_missing_context_field_denies(pdp: PDP) -> None:
    ctx = World().context()
    del ctx["device_managed"]
    d = pdp.decide(ALICE, "read", M1, World().entities(), ctx)
    assert "to have an attribute `device_managed`" in d.errors[0]


def test_malformed_datetime_denies(pdp: PDP) -> None:
    ctx = World().context() | {"now": "yesterday"}
    d = pdp.decide(ALICE, "read", M1, World().entities(), ctx)
    assert not d.allowed
    assert d.errors


def test_entities_that_do_not_conform(pdp: PDP) -> None:
    bad = [*World().entities(), {"uid": uid("Device", "x"), "parents": [], "attrs": {"managed": "yes"}}]
    with pytest.raises(InputError, match="entities rejected"):
        pdp.entities(bad)
    d = pdp.decide(ALICE, "read", M1, bad, World().context())
    assert not d.allowed
    assert "entities rejected" in d.errors[0]


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(InputError, match="no time zone"):
        cedar_datetime(datetime(2026, 1, 1))
    assert cedar_datetime(datetime(2026, 1, 1, 1, 2, 3, 456789, tzinfo=UTC)) == "2026-01-01T01:02:03.456Z"


# --- entity sets, batches, the schema path ------------------------------------------------------------------


def test_entity_set_reuse_and_delta(pdp: PDP) -> None:
    world = World()
    everything = pdp.entities(world.entities())
    assert isinstance(everything, EntitySet)
    assert decide_with(pdp, everything, world).allowed
    base = pdp.entities([e for e in world.entities() if e["uid"]["type"] != "Gpaisec::Grant"])
    assert not decide_with(pdp, base, world).allowed  # the grant is not there: evaluation error
    with_grant = base.with_added([e for e in world.entities() if e["uid"]["type"] == "Gpaisec::Grant"])
    assert len(with_grant) == len(base) + 1
    assert decide_with(pdp, with_grant, world).allowed
    with pytest.raises(InputError):
        base.with_added([{"uid": uid("Device", "x"), "parents": [], "attrs": {}}])


def test_small_entity_lists_are_parsed_once(pdp: PDP) -> None:
    first = pdp.entities(World().entities())
    assert pdp.entities(World().entities()) is first
    assert PDP(pdp.policies).entities(World().entities()) is first  # per policy set, not per PDP
    changed = pdp.entities(World(state="revoked").entities())
    assert changed is not first
    assert decide_with(pdp, changed, World()).determining_policies == ("forbid-grant-inactive",)


def decide_with(pdp: PDP, entities: EntitySet, world: World) -> Decision:
    return pdp.decide(ALICE, "read", M1, entities, world.context())


def test_entity_set_from_another_schema_is_refused(pdp: PDP) -> None:
    other = PDP(PolicySet.from_text("", schema_text=PACKAGED_SCHEMA + "\n// another\n"))
    foreign = other.entities(World().entities())
    d = pdp.decide(ALICE, "read", M1, foreign, World().context())
    assert "another schema" in d.errors[0]


def test_batch_matches_single_decisions(pdp: PDP) -> None:
    worlds = [World(), World(grant_action="write"), World(mfa_age=10**6)]
    entities = pdp.entities(World().entities())
    requests = [Request(ALICE, "read", M1, w.context()) for w in worlds]
    requests.append(Request(ALICE, "read", M1, {"bad": True}))
    requests.append(Request(ALICE, "write", M1, World().context()))
    batch = pdp.decide_batch(requests, entities)
    single = [pdp.decide(r.principal, r.action, r.resource, entities, r.context) for r in requests]
    assert batch == single
    assert [d.allowed for d in batch] == [True, True, False, False, False]


def test_custom_schema_next_to_the_policies(tmp_path: Path, pdp: PDP) -> None:
    schema = PACKAGED_SCHEMA.replace("    edr: Bool,\n", "    edr: Bool,\n    os?: String,\n")
    assert schema != PACKAGED_SCHEMA
    (tmp_path / "schema.cedarschema").write_text(schema)
    (tmp_path / "policies.cedar").write_text(
        pdp.policies.text
        + '\n@id("forbid-old-os") @reason("the device runs an unsupported OS")\n'
        + "forbid (principal, action, resource)\n"
        + 'when { context.device has os && context.device.os == "xp" };\n'
    )
    custom = PDP(PolicySet.load(tmp_path / "policies.cedar"))
    assert custom.policies.schema_text == schema
    assert decide(custom, World()) == decide(pdp, World())
    entities = [
        {**e, "attrs": {**e["attrs"], "os": "xp"}} if e["uid"]["type"] == "Gpaisec::Device" else e
        for e in World().entities()
    ]
    d = custom.decide(ALICE, "read", M1, entities, World().context())
    assert d.determining_policies == ("forbid-old-os",)
    with pytest.raises(InputError):
        pdp.entities(entities)  # the packaged schema has no `os`
    explicit = PolicySet.load(tmp_path / "policies.cedar", schema=tmp_path / "schema.cedarschema")
    assert explicit.policy_ids == custom.policies.policy_ids


def test_now_defaults_to_the_clock(pdp: PDP) -> None:
    real_now = datetime.now(UTC)
    world = World(not_before=real_now - DAY, expires=real_now + DAY)
    ctx = world.context()
    del ctx["now"]
    assert pdp.decide(ALICE, "read", M1, world.entities(), ctx).allowed
    later = World(not_before=real_now + DAY, expires=real_now + 2 * DAY)
    ctx = later.context()
    ctx["now"] = real_now  # a datetime is accepted too
    assert pdp.decide(ALICE, "read", M1, later.entities(), ctx).determining_policies == (
        "forbid-grant-not-yet-valid",
    )


def test_decision_as_dict_and_explain(pdp: PDP) -> None:
    d = decide(pdp, World(grant=False, mfa_age=10**6))
    assert d.as_dict() == {
        "allowed": False,
        "determining_policies": ["forbid-no-grant", "forbid-stale-mfa"],
        "errors": [],
        "reasons": [pdp.policies.reasons["forbid-no-grant"], pdp.policies.reasons["forbid-stale-mfa"]],
        "break_glass": False,
    }
    text = explain(d)
    assert text.splitlines()[0] == "DENIED"
    assert "forbid-no-grant: no grant covers this request" in text


# --- random requests: Cedar against the plain restatement ---------------------------------------------------

# Each drawn request starts from a scenario that is allowed (a person or a service account with a
# grant, break-glass, a released read, an approval, a review) and then breaks up to four things at
# random, so that allows, single failures and combinations are all common.
SCENARIOS = ("grant-person", "grant-service-account", "break-glass", "released", "approve", "review")
PEOPLE = ("alice", "bob", "carol", "dave")
SCOPES = ("weights:read", "weights:write", "weights:export")
FAULTS: dict[str, st.SearchStrategy[Any]] = {
    "shared": st.just(True),
    "background_check": st.sampled_from([timedelta(0), -DAY]),
    "training": st.sampled_from([timedelta(0), -DAY]),
    "roles": st.frozensets(st.sampled_from(("break_glass", "approver", "reviewer"))),
    "scopes": st.frozensets(st.sampled_from(SCOPES)),
    "managed": st.just(False),
    "encrypted": st.just(False),
    "device_managed": st.just(False),
    "released": st.booleans(),
    "mfa_age": st.sampled_from([-1, 12 * 3600, 12 * 3600 + 1, 10**6]),
    "break_glass": st.booleans(),
    "has_grant": st.booleans(),
    "requester": st.sampled_from(PEOPLE[1:]),
    "grant_service_account": st.sampled_from([None, "trainer", "other-sa"]),
    "grant_version": st.just("m2"),
    "grant_location": st.sampled_from([None, "l1", "l2"]),
    "grant_action": st.sampled_from(("read", "write", "export")),
    "approvers": st.frozensets(st.sampled_from(PEOPLE)),
    "not_before": st.sampled_from([timedelta(0), DAY]),
    "expires": st.sampled_from([timedelta(0), -DAY]),
    "state": st.sampled_from(("pending", "revoked")),
    "resource_requester": st.sampled_from(("alice", "bob")),
    "resource_state": st.sampled_from(("active", "revoked")),
}


@st.composite
def requests(
    draw: st.DrawFn,
) -> tuple[dict[str, str], str, dict[str, str], list[dict[str, Any]], dict[str, Any]]:
    scenario = draw(st.sampled_from(SCENARIOS))
    action = {
        "grant-person": st.sampled_from(("read", "write", "export")),
        "grant-service-account": st.sampled_from(("read", "write", "export")),
        "break-glass": st.sampled_from(("break_glass", "read", "write")),
        "released": st.just("read"),
        "approve": st.just("approve"),
        "review": st.just("review"),
    }[scenario]
    p: dict[str, Any] = {
        "action": draw(action),
        "resource": draw(st.sampled_from((M1, uid("Location", "l1")))),
        "shared": False,
        "background_check": DAY,
        "training": DAY,
        "roles": {"break-glass": {"break_glass"}, "approve": {"approver"}, "review": {"reviewer"}}.get(
            scenario, set()
        ),
        "managed": True,
        "encrypted": True,
        "device_managed": True,
        "released": scenario == "released",
        "mfa_age": draw(st.sampled_from((0, 300))),
        "break_glass": scenario == "break-glass",
        "has_grant": scenario.startswith("grant"),
        "requester": "alice",
        "grant_service_account": "trainer" if scenario == "grant-service-account" else None,
        "grant_version": "m1",
        "approvers": {"bob", "carol"},
        "not_before": -DAY,
        "expires": DAY,
        "state": "active",
        "resource_requester": "bob",
        "resource_state": "pending",
    }
    p["scopes"] = {f"weights:{p['action']}"}
    p["grant_action"] = p["action"]
    p["grant_location"] = "l1" if p["resource"]["type"] == "Gpaisec::Location" else None
    for fault in draw(st.lists(st.sampled_from(sorted(FAULTS)), max_size=4, unique=True)):
        p[fault] = draw(FAULTS[fault])

    action = p["action"]
    principal = TRAINER if scenario == "grant-service-account" else ALICE
    entities: list[dict[str, Any]] = [
        person_entity(
            "alice",
            shared=p["shared"],
            background_check_valid_until=NOW + p["background_check"],
            insider_training_valid_until=NOW + p["training"],
            roles=p["roles"],
        ),
        service_account_entity("trainer", scopes=p["scopes"]),
        device_entity("d", managed=p["managed"], disk_encrypted=p["encrypted"], edr=draw(st.booleans())),
        model_version_entity("m1", model="x", released=p["released"]),
        model_version_entity("m2", model="x", released=False),
        location_entity("l1", version="m1"),
        location_entity("l2", version="m2"),
    ]
    if action in ("approve", "review"):
        resource = uid("Grant", "g-res")
        entities.append(
            grant_entity(
                "g-res",
                requester=p["resource_requester"],
                version="m1",
                action="export",
                approvers=(),
                not_before=NOW,
                expires=NOW + DAY,
                state=p["resource_state"],
            )
        )
    else:
        resource = p["resource"]
    if p["has_grant"]:
        entities.append(
            grant_entity(
                "g",
                requester=p["requester"],
                service_account=p["grant_service_account"],
                version=p["grant_version"],
                location=p["grant_location"],
                action=p["grant_action"],
                approvers=p["approvers"],
                not_before=NOW + p["not_before"],
                expires=NOW + p["expires"],
                state=p["state"],
            )
        )
    context = request_context(
        now=NOW,
        device="d",
        device_managed=p["device_managed"],
        mfa_age_seconds=p["mfa_age"],
        source_ip=draw(st.sampled_from(("10.0.0.1", "2001:db8::1"))),
        grant="g" if p["has_grant"] else None,
        break_glass=p["break_glass"],
    )
    return principal, action, resource, entities, context


def valid_grant(
    principal: dict[str, str], action: str, resource: dict[str, str], entities: list[Any], ctx: Any
) -> bool:
    """The grant rule, stated once more and independently of both evaluators."""
    if "grant" not in ctx:
        return False
    g = next(e for e in entities if e["uid"] == ctx["grant"])["attrs"]
    approvers = {a["id"] for a in g["approvers"]}
    not_before, expires = (datetime.fromisoformat(g[k]) for k in ("not_before", "expires"))
    if resource["type"] == "Gpaisec::ModelVersion":
        right_resource = g["version"] == resource and "location" not in g
    else:
        location_version = {"l1": "m1", "l2": "m2"}[resource["id"]]
        right_resource = g["version"]["id"] == location_version and g.get("location", resource) == resource
    if principal["type"] == "Gpaisec::Person":
        right_principal = g["requester"] == principal and "service_account" not in g
    else:
        right_principal = g.get("service_account") == principal
    return (
        g["state"] == "active"
        and g["action"]["id"] == action
        and not_before <= NOW < expires
        and g["requester"]["id"] not in approvers
        and len(approvers) >= 2
        and right_resource
        and right_principal
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_cedar_decides_as_the_plain_rules(pdp: PDP, drawn: Any) -> None:
    principal, action, resource, entities, context = drawn
    cedar = pdp.decide(principal, action, resource, entities, context)
    plain = evaluate_plain(principal, action, resource, entities, context)
    assert cedar.errors == ()
    assert (cedar.allowed, cedar.determining_policies, cedar.break_glass) == (
        plain.allowed,
        plain.determining_policies,
        plain.break_glass,
    ), explain(cedar)
    assert pdp.decide(principal, action, resource, pdp.entities(entities), context) == cedar


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_unreleased_weights_need_a_valid_grant(pdp: PDP, drawn: Any) -> None:
    """Whatever the context: no read, write or export of unreleased weights without a valid grant,
    except under break-glass (flagged), and no export at all without one."""
    principal, action, resource, entities, context = drawn
    d = pdp.decide(principal, action, resource, entities, context)
    released = next(e for e in entities if e["uid"] == M1)["attrs"]["released"]
    if action not in ("read", "write", "export") or released or not d.allowed:
        return
    grant_ok = valid_grant(principal, action, resource, entities, context)
    assert grant_ok or d.break_glass, explain(d)
    assert grant_ok or action != "export", explain(d)


# -- the decision memo ------------------------------------------------------------------------------

MS = timedelta(milliseconds=1)


def test_the_memo_answers_as_cedar_across_every_time_boundary(policies: PolicySet) -> None:
    """Prime the memo just before each boundary, then ask just at and after it: the answer must be
    Cedar's own (the memo may only reuse an answer while no compared value has been crossed)."""
    w = World(background_check=NOW + 3 * DAY, training=NOW + 5 * DAY, not_before=NOW - DAY, expires=NOW + DAY)
    memo, cedar = PDP(policies), PDP(policies, memo=False)
    world = memo.entities(w.entities())
    boundaries = [w.not_before, w.expires, w.background_check, w.training]
    times = sorted({b + d for b in boundaries for d in (-2 * MS, -MS, 0 * MS, MS)} | {NOW})
    max_age = memo.mfa_max_age_seconds
    ages = [-1, 0, 1, 60, max_age - 1, max_age, max_age + 1]
    seen: set[tuple[bool, tuple[str, ...]]] = set()
    for age in ages:
        for t in times:
            ctx = {**w.context(), "now": t, "mfa_age_seconds": age}
            got = memo.decide(ALICE, "read", M1, world, ctx)
            assert got == cedar.decide(ALICE, "read", M1, world, ctx), (t, age)
            seen.add((got.allowed, got.determining_policies))
    # The sweep crossed from allow to several different denials.
    assert (True, ("permit-unreleased-with-grant",)) in seen
    assert {p for _, ids in seen for p in ids} >= {
        "forbid-grant-not-yet-valid",
        "forbid-grant-expired",
        "forbid-expired-background-check",
        "forbid-lapsed-training",
        "forbid-stale-mfa",
    }


def test_the_memo_never_serves_another_requests_answer(policies: PolicySet) -> None:
    memo = PDP(policies)
    good = World()
    world = memo.entities(good.entities())
    assert memo.decide(ALICE, "read", M1, world, good.context()).allowed
    # Another action, another device signal, other entities: each decided afresh.
    assert not memo.decide(ALICE, "export", M1, world, good.context()).allowed
    assert not memo.decide(ALICE, "read", M1, world, {**good.context(), "device_managed": False}).allowed
    revoked = World(state="revoked")
    assert not memo.decide(ALICE, "read", M1, revoked.entities(), revoked.context()).allowed


@pytest.mark.parametrize(
    "condition",
    [
        'context.now < principal.background_check_valid_until.offset(duration("1h"))',
        "context.mfa_age_seconds + 1 < 5",
        "1 - context.mfa_age_seconds < 5",
        "context == {}",
        'context["now"] < principal.background_check_valid_until',
        "[context.now].contains(principal.background_check_valid_until)",
        'context.now < datetime("2027-01-01")',
        "context.now.toDate() < principal.background_check_valid_until",
    ],
)
def test_policies_using_time_otherwise_are_not_memoised(condition: str) -> None:
    text = f'@id("p")\npermit (principal, action, resource) when {{ {condition} }};'
    assert pdp_module.memo_literals(text) is None


def test_the_packaged_policies_are_memoised_with_their_literals(policies: PolicySet) -> None:
    assert pdp_module.memo_literals(policies.text) == frozenset({0})
    assert pdp_module.memo_literals('// context.now + 1\n@id("p") permit (principal, action, resource);') == (
        frozenset()
    )
