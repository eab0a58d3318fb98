"""Tables of the access area: people, accounts and their factors, device keys, sessions, throttling,
grants with their approvals, and authorisation reviews.

Secrets are stored only as hashes (passwords: argon2id; recovery codes, service tokens and session
tokens: SHA-256 of a high-entropy random value). The TOTP seed is the exception: the verifier needs
it in the clear (see :mod:`gpaisec.access.mfa`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gpaisec.store.base import Base, UTCDateTime

__all__ = [
    "Account",
    "DeviceKey",
    "Grant",
    "GrantApproval",
    "LoginThrottle",
    "Person",
    "RecoveryCode",
    "ReviewCampaign",
    "ReviewItem",
    "ServiceToken",
    "Session",
    "TotpCredential",
    "WebAuthnChallenge",
    "WebAuthnCredential",
]


class Person(Base):
    """A named human, with the vetting dates the policy reads (A4.4(1)(2))."""

    __tablename__ = "people"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str] = mapped_column(String(320), default="")
    organisation: Mapped[str] = mapped_column(String(200), default="")
    background_check_valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    insider_training_valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Account(Base):
    """A sign-in identity: ``human`` (exactly one per person) or ``service`` (owned by a person)."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # human | service
    # Unique: one human account per person. NULL for service accounts (NULLs never collide).
    person_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"), nullable=True, unique=True)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"), nullable=True, index=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    person: Mapped[Person | None] = relationship(foreign_keys=[person_id])
    owner: Mapped[Person | None] = relationship(foreign_keys=[owner_id])


class TotpCredential(Base):
    """An RFC 6238 authenticator; ``last_used_step`` rejects a code (time step) used before.

    ``secret`` holds the seed sealed (``v1:...``, see :class:`gpaisec.access.mfa.SeedSealer`); a
    plaintext base32 seed only in a workspace upgraded from before migration 0006, until its first use
    or :func:`gpaisec.access.mfa.seal_legacy_seeds`.
    """

    __tablename__ = "totp_credentials"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(255))
    last_used_step: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of a 100-bit random code
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ServiceToken(Base):
    """A bearer token of a service account: its hash only, scoped and expiring."""

    __tablename__ = "service_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DeviceKey(Base):
    """Binds a registered device (weights.Device) to a public key; sessions are bound to it."""

    __tablename__ = "device_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(100), unique=True)  # sha256:<hex> of the public key
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Session(Base):
    """A signed-in account on one device key. Only the token's SHA-256 is stored."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_account_revoked", "account_id", "revoked_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    device_key_id: Mapped[str] = mapped_column(ForeignKey("device_keys.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    mfa_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    account: Mapped[Account] = relationship()
    device_key: Mapped[DeviceKey] = relationship()


class LoginThrottle(Base):
    """Storage of :class:`gpaisec.access.ratelimit.Throttle` counters (keys are HMACs, never names)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure: Mapped[float] = mapped_column(Float)
    expires: Mapped[float] = mapped_column(Float, index=True)


class Grant(Base):
    """A time-bound grant of one action on one model version (or one location of it)."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_requester_state", "requester_id", "state"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    requester_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    service_account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), nullable=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True)
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(10))  # read | write | export
    duration_seconds: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12))  # requested | active | expired | revoked | denied
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # break-glass
    reviewed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    requester: Mapped[Account] = relationship(foreign_keys=[requester_id])
    service_account: Mapped[Account | None] = relationship(foreign_keys=[service_account_id])
    approvals: Mapped[list[GrantApproval]] = relationship(
        back_populates="grant", cascade="all, delete-orphan", order_by="GrantApproval.approved_at"
    )


class GrantApproval(Base):
    """One approver's approval; the primary key makes approvers of a grant distinct."""

    __tablename__ = "grant_approvals"

    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), primary_key=True)
    approver_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    mfa_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    grant: Mapped[Grant] = relationship(back_populates="approvals")
    approver: Mapped[Account] = relationship()


class ReviewCampaign(Base):
    """An authorisation review (A4.3(1): at least every six months)."""

    __tablename__ = "review_campaigns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    started_by: Mapped[str] = mapped_column(String(200))
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    items: Mapped[list[ReviewItem]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="ReviewItem.principal"
    )


class ReviewItem(Base):
    __tablename__ = "review_items"
    __table_args__ = (UniqueConstraint("campaign_id", "account_id", name="review_item_account"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("review_campaigns.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    principal: Mapped[str] = mapped_column(String(100))  # the username, as reviewed
    kind: Mapped[str] = mapped_column(String(10))  # human | service
    access: Mapped[dict[str, Any]] = mapped_column(JSON)  # what the principal could reach, at the start
    reviewer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decision: Mapped[str | None] = mapped_column(String(10), nullable=True)  # keep | revoke
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    campaign: Mapped[ReviewCampaign] = relationship(back_populates="items")


class WebAuthnCredential(Base):
    """A WebAuthn/passkey public key of an account (see :mod:`gpaisec.access.webauthn`).

    ``sign_count`` is the authenticator's signature counter as last accepted; a counter that does not
    increase suggests a cloned authenticator. Only public material is stored.
    """

    __tablename__ = "webauthn_credentials"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)  # at most 1023 bytes
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)  # unsigned 32-bit on the wire
    transports: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebAuthnChallenge(Base):
    """The pending challenge of one passkey ceremony (``register`` or ``authenticate``) of an account,
    or (purpose ``device:<key id>``) the issue time of the last device-proof challenge the account
    used with that key at sign-in: only a later one is accepted (:mod:`gpaisec.access.device_keys`,
    ``accounts``).

    One per account and purpose: a new ceremony replaces it, finishing one deletes it (used or not).
    """

    __tablename__ = "webauthn_challenges"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    # register | authenticate | device:<device key id>
    purpose: Mapped[str] = mapped_column(String(40), primary_key=True)
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
