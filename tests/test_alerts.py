from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from gpaisec.weights import registry
from gpaisec.workspace import Workspace


def open_one(ws: Workspace, key: str, severity: str = "critical") -> str:
    with ws.transaction() as s:
        f, _ = registry.open_finding(
            s, ws, kind="unmanaged_device_copy", severity=severity, summary=f"copy {key}", dedupe_key=key
        )
    return f.id


def test_alerts_are_delivered_after_commit(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = tmp_path / "received.jsonl"
    hook = f"import sys; open({str(received)!r}, 'a').write(sys.stdin.read() + '\\n')"
    monkeypatch.setenv("GPAISEC_ALERT_COMMAND", shlex.join([sys.executable, "-c", hook]))
    fid = open_one(workspace, "k1")
    open_one(workspace, "k2", severity="low")  # low severity: a finding, not an alert
    lines = [json.loads(x) for x in (workspace.home / "alerts.jsonl").read_text().splitlines()]
    assert [a["ref"] for a in lines] == [fid]
    assert lines[0]["severity"] == "critical"
    assert json.loads(received.read_text().splitlines()[0])["ref"] == fid
    assert (workspace.home / "alerts.jsonl").stat().st_mode & 0o077 == 0


def _fails_after_opening(ws: Workspace) -> None:
    with ws.transaction() as s:
        registry.open_finding(s, ws, kind="unauthorised_copy", severity="high", summary="x", dedupe_key="k3")
        raise RuntimeError("the operation failed after opening the finding")


def test_no_alert_when_the_operation_rolls_back(workspace: Workspace) -> None:
    with pytest.raises(RuntimeError):
        _fails_after_opening(workspace)
    assert not (workspace.home / "alerts.jsonl").exists()
    assert registry.list_findings(workspace) == []


def test_a_failing_alert_command_does_not_undo_the_operation(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPAISEC_ALERT_COMMAND", "/nonexistent/pager --urgent")
    fid = open_one(workspace, "k4")
    assert [f.id for f in registry.list_findings(workspace)] == [fid]
    assert "alert command" in capsys.readouterr().err
