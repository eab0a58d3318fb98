"""Alerts: security events that someone must see now (a copy of unreleased weights on an unmanaged
device, break-glass access, a rate limit cut).

A service raises an alert inside its transaction with :func:`raise_alert`; the alert is delivered only
after that transaction commits (an operation that rolls back alerts nobody). Delivery:

1. always: one JSON line appended to ``<workspace>/alerts.jsonl`` (flushed and fsynced), which a
   log shipper or SIEM agent can tail;
2. if ``GPAISEC_ALERT_COMMAND`` is set: that command (split like a shell would, never run through a
   shell) gets the alert as JSON on standard input, with a 10-second limit -- e.g. a script that posts
   to a pager or chat webhook.

A delivery failure never undoes the committed operation: it is reported on stderr and the alert stays in
the audit log, which recorded the underlying event in the same transaction.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from gpaisec.store.base import utcnow

__all__ = ["ALERT_COMMAND_ENV", "deliver", "pending_alerts", "raise_alert"]

ALERT_COMMAND_ENV = "GPAISEC_ALERT_COMMAND"
_KEY = "gpaisec.alerts.pending"


def raise_alert(
    session: Session, *, kind: str, severity: str, summary: str, ref: str, **details: Any
) -> None:
    """Queue an alert for delivery when ``session``'s transaction commits."""
    session.info.setdefault(_KEY, []).append(
        {
            "time": utcnow().isoformat(),
            "kind": kind,
            "severity": severity,
            "summary": summary,
            "ref": ref,
            "details": details,
        }
    )


def pending_alerts(session: Session) -> list[dict[str, Any]]:
    """Take the alerts queued in ``session`` (they are removed from it)."""
    alerts: list[dict[str, Any]] = session.info.pop(_KEY, [])
    return alerts


def deliver(home: Path, alerts: list[dict[str, Any]]) -> None:
    if not alerts:
        return
    lines = "".join(json.dumps(a, sort_keys=True, ensure_ascii=False) + "\n" for a in alerts)
    try:
        fd = os.open(home / "alerts.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        sys.stderr.write(f"warning: could not append alerts to {home / 'alerts.jsonl'}: {exc.strerror}\n")
    command = os.environ.get(ALERT_COMMAND_ENV)
    if not command:
        return
    argv = shlex.split(command)
    for alert in alerts:
        try:
            subprocess.run(  # noqa: S603 - the operator's configured command, no shell
                argv, input=json.dumps(alert).encode(), timeout=10, check=True, capture_output=True
            )
        except (OSError, subprocess.SubprocessError) as exc:
            sys.stderr.write(f"warning: the alert command {argv[0]!r} failed: {exc.__class__.__name__}\n")
