"""Upcoming (and missed) deadlines: the dates a compliance lead must not let slip.

One read transaction over the store gathers, within a horizon (default 60 days) or already past:

* the next six-monthly authorisation review (A4.3(1)): six months after the last closed one;
* background checks and insider-threat training of people with an account (A4.4(1)/(2));
* evidence that expires, and attestations whose validity ends (they stop counting then);
* active grants that end (so nobody is surprised by a cut mid-run).

Serious incidents and their legal reporting deadlines are not tracked by gpaisec yet; nothing is
invented for them here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from gpaisec.access.grants import effective_state
from gpaisec.access.models import Account, Grant, Person, ReviewCampaign
from gpaisec.access.reviews import REVIEW_INTERVAL
from gpaisec.compliance.models import Attestation, Evidence
from gpaisec.store.base import utcnow
from gpaisec.workspace import Workspace

__all__ = ["DEFAULT_HORIZON", "Deadline", "upcoming"]

DEFAULT_HORIZON = dt.timedelta(days=60)


@dataclass(frozen=True)
class Deadline:
    due: dt.datetime
    kind: str  # access_review | background_check | insider_training | evidence | attestation | grant
    subject: str
    what: str
    item: str | None = None  # the Code's item it bears on

    def overdue(self, now: dt.datetime) -> bool:
        return self.due <= now

    def to_json(self, now: dt.datetime) -> dict[str, Any]:
        return {
            "due": self.due.isoformat(),
            "kind": self.kind,
            "subject": self.subject,
            "what": self.what,
            "item": self.item,
            "overdue": self.overdue(now),
        }


def upcoming(
    ws: Workspace, *, horizon: dt.timedelta = DEFAULT_HORIZON, now: dt.datetime | None = None
) -> list[Deadline]:
    """Every deadline due before ``now + horizon`` (past ones included), soonest first."""
    now = now or utcnow()
    until = now + horizon
    out: list[Deadline] = []
    with ws.reader() as s:
        last = s.scalars(
            select(ReviewCampaign)
            .where(ReviewCampaign.closed_at.is_not(None))
            .order_by(ReviewCampaign.closed_at.desc())
            .limit(1)
        ).first()
        if last is None or last.closed_at is None:
            out.append(
                Deadline(
                    now, "access_review", "authorisation review", "no review has ever been closed", "A4.3(1)"
                )
            )
        elif last.closed_at + REVIEW_INTERVAL <= until:
            out.append(
                Deadline(
                    last.closed_at + REVIEW_INTERVAL,
                    "access_review",
                    "authorisation review",
                    f"six months after review {last.id}",
                    "A4.3(1)",
                )
            )
        people = s.execute(
            select(Person, Account.username)
            .join(Account, Account.person_id == Person.id)
            .where(Account.disabled_at.is_(None))
        )
        for person, username in people:
            for kind, when, what in (
                ("background_check", person.background_check_valid_until, "background check"),
                ("insider_training", person.insider_training_valid_until, "insider-threat training"),
            ):
                if when is None:
                    out.append(
                        Deadline(now, kind, f"{person.name} ({username})", f"no {what} on record", "A4.4(1)")
                    )
                elif when <= until:
                    out.append(Deadline(when, kind, f"{person.name} ({username})", f"{what} ends", "A4.4(1)"))
        for ev in s.scalars(
            select(Evidence).where(Evidence.expires_at.is_not(None), Evidence.expires_at <= until)
        ):
            assert ev.expires_at is not None
            out.append(
                Deadline(
                    ev.expires_at,
                    "evidence",
                    ev.title,
                    "evidence expires",
                    ev.item_ids[0] if ev.item_ids else None,
                )
            )
        for att in s.scalars(
            select(Attestation).where(
                Attestation.withdrawn_at.is_(None),
                Attestation.valid_until.is_not(None),
                Attestation.valid_until <= until,
            )
        ):
            assert att.valid_until is not None
            out.append(
                Deadline(
                    att.valid_until,
                    "attestation",
                    f"{att.item_id} by {att.attested_by}",
                    "attestation ends",
                    att.item_id,
                )
            )
        for g in s.scalars(
            select(Grant).where(
                Grant.state == "active", Grant.expires_at.is_not(None), Grant.expires_at <= until
            )
        ):
            if effective_state(g, now) == "active" and g.expires_at is not None:
                out.append(
                    Deadline(g.expires_at, "grant", f"grant {g.id}", f"{g.action} access ends", "A4.3(4)")
                )
    return sorted(out, key=lambda d: (d.due, d.kind, d.subject))
