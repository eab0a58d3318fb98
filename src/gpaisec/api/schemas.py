"""Request (``…Create``, ``…Body``) and response (``…Public``) schemas, kept apart.

A request schema never has server-set fields; a response schema never has secrets (password
hashes, token hashes, TOTP seeds).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "NO_CONTROL",
    "ApproveBody",
    "AssessmentCreate",
    "DecisionPublic",
    "DeviceChallengePublic",
    "DeviceProofBody",
    "DecideBody",
    "FindingPublic",
    "GrantCreate",
    "GrantPublic",
    "GrantRowPublic",
    "MePublic",
    "PasskeyCreate",
    "PasskeyPublic",
    "PasskeySignInBody",
    "SessionInfoPublic",
    "WebAuthnOptionsPublic",
    "ReasonBody",
    "ReviewDecisionBody",
    "ReviewItemPublic",
    "ReviewPublic",
    "SessionCreate",
    "SessionPublic",
    "StepUpBody",
]


# Text from outside may hold no control characters but tab and newline (PostgreSQL refuses NUL, and
# nothing we store needs the others).
NO_CONTROL = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=10_000)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str) and _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value


# A PublicKeyCredential as the browser's toJSON() gives it (py_webauthn parses and checks it).
_CREDENTIAL = "a PublicKeyCredential from navigator.credentials, as its toJSON() gives it"


def _one_factor(code: str | None, webauthn: dict[str, Any] | None, *, required: bool) -> None:
    if code is not None and webauthn is not None:
        raise ValueError("give a one-time code or a passkey's assertion, not both")
    if required and code is None and webauthn is None:
        raise ValueError("give a one-time code or a passkey's assertion")


class DeviceProofBody(_In):
    """Proof that the client holds its device's enrolled key (see POST /session/device-challenge)."""

    fingerprint: str = Field(
        min_length=1,
        max_length=100,
        description="sha256: and the hex SHA-256 of the device key's DER SubjectPublicKeyInfo.",
    )
    challenge_id: str = Field(
        min_length=1, max_length=200, description="From POST /session/device-challenge."
    )
    signature: str = Field(
        min_length=1,
        max_length=200,
        description=(
            'Base64 signature of b"gpaisec-device-proof-v1\\0" + challenge (32 bytes) + fingerprint (ASCII) '
            "+ username (UTF-8): Ed25519, or ECDSA P-256/SHA-256 as r||s (64 bytes)."
        ),
    )


class DeviceChallengePublic(BaseModel):
    challenge_id: str = Field(description="Send it back in device_proof.challenge_id.")
    challenge: str = Field(description="32 random bytes, base64: the part of the message to sign.")
    expires_at: dt.datetime


class SessionCreate(_In):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024, json_schema_extra={"format": "password"})
    totp_code: str | None = Field(default=None, max_length=64, description="One-time or recovery code.")
    webauthn: dict[str, Any] | None = Field(
        default=None,
        description=f"Instead of totp_code: {_CREDENTIAL}, for the options of POST /session/webauthn.",
    )
    device: str = Field(
        min_length=1, max_length=200, description="The device's name or key fingerprint (sha256:...)."
    )
    device_proof: DeviceProofBody | None = Field(
        default=None, description="Required: a signature of a fresh device challenge by the device's key."
    )

    @model_validator(mode="after")
    def _factors(self) -> SessionCreate:
        _one_factor(self.totp_code, self.webauthn, required=False)
        return self


class PasskeySignInBody(_In):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024, json_schema_extra={"format": "password"})


class WebAuthnOptionsPublic(BaseModel):
    public_key: dict[str, Any] = Field(
        description="Options for navigator.credentials (get or create), challenge and ids in base64url."
    )


class PasskeyCreate(_In):
    credential: dict[str, Any] = Field(description=f"The new passkey: {_CREDENTIAL}.")


class PasskeyPublic(BaseModel):
    id: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    transports: list[str]
    sign_count: int


class SessionInfoPublic(BaseModel):
    id: str
    device: str
    source: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    mfa_at: dt.datetime | None
    expires_at: dt.datetime
    current: bool


class SessionPublic(BaseModel):
    username: str
    session_id: str
    expires_at: dt.datetime
    mfa_at: dt.datetime | None
    csrf_token: str = Field(description="Send it as X-CSRF-Token on every unsafe request.")


class StepUpBody(_In):
    code: str | None = Field(
        default=None, min_length=1, max_length=64, description="One-time or recovery code."
    )
    webauthn: dict[str, Any] | None = Field(
        default=None,
        description=f"Instead of code: {_CREDENTIAL}, for the options of POST /session/mfa/webauthn.",
    )

    @model_validator(mode="after")
    def _factors(self) -> StepUpBody:
        _one_factor(self.code, self.webauthn, required=True)
        return self


class MePublic(BaseModel):
    username: str
    kind: Literal["human", "service"]
    person: str | None
    roles: list[str]
    scopes: list[str]
    via: Literal["session", "token"]
    session_id: str | None


class GrantCreate(_In):
    scope: str = Field(min_length=1, max_length=400, description="MODEL:VERSION or MODEL:VERSION@LOCATION")
    action: Literal["read", "write", "export"] = "read"
    duration_seconds: int = Field(gt=0, le=7 * 24 * 3600)
    reason: str = Field(min_length=1, max_length=2000)
    service_account: str | None = Field(default=None, max_length=100)


class ApproveBody(_In):
    totp_code: str | None = Field(
        default=None,
        max_length=64,
        description="A fresh one-time code; approving needs a second factor within the last 5 minutes.",
    )


class ReasonBody(_In):
    reason: str = Field(min_length=1, max_length=2000)


class GrantPublic(BaseModel):
    id: str
    state: str
    action: str
    requested_at: dt.datetime
    expires_at: dt.datetime | None


class GrantRowPublic(BaseModel):
    id: str
    requester: str
    service_account: str | None
    scope: str
    action: str
    state: str
    break_glass: bool
    approvers: list[str]
    requested_at: dt.datetime
    expires_at: dt.datetime | None
    reason: str


class DecideBody(_In):
    principal: str = Field(min_length=1, max_length=100, description="The account asking for access.")
    action: Literal["read", "write", "export"]
    resource: str = Field(
        min_length=1,
        max_length=1300,
        description="MODEL:VERSION, or MODEL:VERSION@LOCATION for one copy of it (DEVICE:/path or a URI, "
        "written exactly as registered)",
    )
    explain: bool = False
    device: str | None = Field(default=None, max_length=200, description="For a principal without a session.")
    source_ip: str | None = Field(default=None, max_length=64, description="Default: the caller's address.")


class DecisionPublic(BaseModel):
    decision: Literal["allow", "deny"]
    allowed: bool
    determining_policies: list[str]
    reasons: list[str]
    errors: list[str]
    break_glass: bool


class ReviewItemPublic(BaseModel):
    principal: str
    kind: str
    access: dict[str, Any]
    decision: str | None
    reviewer: str | None
    reason: str | None
    decided_at: dt.datetime | None


class ReviewPublic(BaseModel):
    id: str
    started_at: dt.datetime
    started_by: str
    closed_at: dt.datetime | None
    closed_by: str | None
    items: list[ReviewItemPublic] | None = None


class ReviewDecisionBody(_In):
    principal: str = Field(min_length=1, max_length=100)
    decision: Literal["keep", "revoke"]
    reason: str = Field(min_length=1, max_length=2000)


class FindingPublic(BaseModel):
    id: str
    kind: str
    severity: str
    state: str
    summary: str
    details: dict[str, Any]
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by: str | None
    resolution: str | None


class AssessmentCreate(_In):
    chapter: Literal["safety-security", "transparency", "copyright", "all"] = "safety-security"
