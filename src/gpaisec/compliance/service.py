"""Operations on controls, evidence and attestations. One transaction each, each audited."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gpaisec.audit.service import record
from gpaisec.catalog import load_catalog
from gpaisec.compliance.documents import store_document
from gpaisec.compliance.models import Attestation, Control, Evidence
from gpaisec.compliance.verdicts import Verdict
from gpaisec.errors import ConflictError, InputError, NotFoundError
from gpaisec.store.base import new_id, utcnow
from gpaisec.workspace import Workspace

CONTROL_STATUSES = ("planned", "implemented", "retired")


def _item_id(item: str) -> str:
    return load_catalog().get(item).id


def _future(when: dt.datetime | None, what: str) -> None:
    if when is not None and when <= utcnow():
        raise InputError(f"{what} {when.isoformat()} is in the past", hint="give a future date")


def add_control(
    ws: Workspace, item: str, *, title: str, owner: str, description: str = "", status: str = "implemented"
) -> Control:
    item_id = _item_id(item)
    if status not in CONTROL_STATUSES:
        raise InputError(
            f"unknown control status {status!r}", hint=f"use one of {', '.join(CONTROL_STATUSES)}"
        )
    if not title.strip() or not owner.strip():
        raise InputError("a control needs a title and an owner")
    now = utcnow()
    control = Control(
        id=new_id("ctl"),
        item_id=item_id,
        title=title.strip(),
        owner=owner.strip(),
        description=description,
        status=status,
        created_at=now,
        updated_at=now,
    )
    with ws.transaction() as s:
        s.add(control)
        record(
            s,
            actor=ws.actor,
            action="control.add",
            object=control.id,
            details={"item": item_id, "title": control.title, "owner": control.owner, "status": status},
        )
    return control


def add_evidence(
    ws: Workspace,
    items: Sequence[str],
    *,
    title: str,
    source: str,
    kind: str = "document",
    path: Path | None = None,
    content: dict[str, Any] | None = None,
    expires_at: dt.datetime | None = None,
    collected_at: dt.datetime | None = None,
) -> Evidence:
    """Record evidence for one or more items. A file is copied into the workspace under its hash."""
    if not items:
        raise InputError("evidence must name at least one measure or objective")
    item_ids = sorted({_item_id(i) for i in items})
    _future(expires_at, "the expiry date")
    size: int | None = None
    stored_as: str | None = None
    media: str | None = None
    if path is not None:
        doc = store_document(ws.home, path)
        digest, size, stored_as = doc.sha256, doc.size, doc.stored_as
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    elif content is not None:
        blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        digest, size, media = hashlib.sha256(blob).hexdigest(), len(blob), "application/json"
    else:
        raise InputError("evidence needs a file or content", hint="pass --file")
    ev = Evidence(
        id=new_id("ev"),
        item_ids=item_ids,
        kind=kind,
        title=title,
        source=source,
        content_sha256=digest,
        size=size,
        media_type=media,
        stored_as=stored_as,
        collected_at=collected_at or utcnow(),
        collected_by=ws.actor,
        expires_at=expires_at,
    )
    with ws.transaction() as s:
        s.add(ev)
        record(
            s,
            actor=ws.actor,
            action="evidence.add",
            object=ev.id,
            details={"items": item_ids, "sha256": digest, "source": source, "title": title},
        )
    return ev


def attest(
    ws: Workspace,
    item: str,
    *,
    claim: Verdict,
    statement: str,
    attested_by: str,
    role: str = "",
    valid_until: dt.datetime | None = None,
    documents: Sequence[Path] = (),
) -> Attestation:
    """A person states that an item is met, partly met, not met or not applicable, and why."""
    item_id = _item_id(item)
    if claim is Verdict.no_evidence:
        raise InputError(
            "an attestation must claim a verdict", hint="use met, partly_met, not_met or not_applicable"
        )
    if len(statement.strip()) < 20:
        raise InputError(
            "the statement is too short to support a verdict",
            hint="say what is done and where it is documented (at least 20 characters)",
        )
    if not attested_by.strip():
        raise InputError("an attestation needs the name of the person who makes it")
    _future(valid_until, "the validity end")
    evidence_ids = [
        add_evidence(
            ws,
            [item_id],
            title=f"document for attestation: {doc.name}",
            source=attested_by,
            path=doc,
            expires_at=valid_until,
        ).id
        for doc in documents
    ]
    att = Attestation(
        id=new_id("att"),
        item_id=item_id,
        claim=claim.value,
        statement=statement.strip(),
        attested_by=attested_by.strip(),
        role=role,
        attested_at=utcnow(),
        valid_until=valid_until,
        evidence_ids=evidence_ids,
    )
    with ws.transaction() as s:
        s.add(att)
        record(
            s,
            actor=ws.actor,
            action="attestation.add",
            object=att.id,
            details={"item": item_id, "claim": claim.value, "by": att.attested_by, "evidence": evidence_ids},
        )
    return att


def withdraw_attestation(ws: Workspace, attestation_id: str, *, reason: str) -> Attestation:
    if not reason.strip():
        raise InputError("withdrawing an attestation needs a reason")
    with ws.transaction() as s:
        att = s.get(Attestation, attestation_id)
        if att is None:
            raise NotFoundError(f"no attestation {attestation_id}", hint="see `gpaisec attestations list`")
        if att.withdrawn_at is not None:
            raise ConflictError(f"attestation {attestation_id} was already withdrawn")
        att.withdrawn_at = utcnow()
        record(s, actor=ws.actor, action="attestation.withdraw", object=att.id, details={"reason": reason})
    return att


def list_controls(ws: Workspace, item: str | None = None) -> list[Control]:
    with ws.reader() as s:
        q = select(Control).order_by(Control.item_id, Control.created_at)
        if item:
            q = q.where(Control.item_id == _item_id(item))
        return list(s.scalars(q))


def list_evidence(ws: Workspace, item: str | None = None) -> list[Evidence]:
    with ws.reader() as s:
        rows = list(s.scalars(select(Evidence).order_by(Evidence.collected_at)))
    if item:
        item_id = _item_id(item)
        rows = [r for r in rows if item_id in r.item_ids]
    return rows


def list_attestations(
    ws: Workspace, item: str | None = None, *, include_withdrawn: bool = False
) -> list[Attestation]:
    with ws.reader() as s:
        q = select(Attestation).order_by(Attestation.item_id, Attestation.attested_at)
        if item:
            q = q.where(Attestation.item_id == _item_id(item))
        if not include_withdrawn:
            q = q.where(Attestation.withdrawn_at.is_(None))
        return list(s.scalars(q))
