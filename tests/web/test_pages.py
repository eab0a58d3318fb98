"""The dashboard's pages over TestClient: sign-in, CSRF on every form, roles, headers, each page's data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gpaisec.api.middleware import JSON_CSP
from gpaisec.compliance import assessment
from gpaisec.web import PAGE_CSP
from gpaisec.weights import registry
from gpaisec.workspace import Workspace
from tests.web.conftest import World, form_csrf, page_sign_in, proof_form

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "gpaisec" / "web" / "templates"


def plant_finding(ws: Workspace, summary: str = "atlas:v3 copied to a USB stick") -> str:
    with ws.transaction() as s:
        finding, _ = registry.open_finding(
            s, ws, kind="unregistered_location", severity="high", summary=summary, dedupe_key=summary
        )
        return finding.id


def test_sign_in_through_the_form_gives_the_api_session(client: TestClient, world: World) -> None:
    page_sign_in(client, world, "erin")
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["username"] == "erin"
    assert client.get("/login", follow_redirects=False).headers["location"] == "/"


def test_failed_sign_ins_look_alike(client: TestClient, world: World) -> None:
    answers = []
    for user, password in (("erin", "wrong password here"), ("nobody", "wrong password here")):
        csrf = form_csrf(client.get("/login").text)
        r = client.post(
            "/login",
            data={"csrf_token": csrf, "username": user, "password": password, "totp_code": "000000"}
            | {"device": "laptop-erin"}
            | proof_form(client, user, "laptop-erin"),  # a good device proof: the password is what fails
        )
        assert r.status_code == 401
        answers.append(r.text.replace(f'value="{user}"', "USER"))
    assert answers[0] == answers[1]
    assert "sign-in failed" in answers[0]


def test_sign_in_form_needs_its_csrf_token(client: TestClient, world: World) -> None:
    r = client.post(
        "/login",
        data={"username": "erin", "password": "x", "totp_code": "1", "device": "laptop-erin"},
    )
    assert r.status_code == 403
    other = TestClient(client.app)
    stolen = form_csrf(other.get("/login").text)  # another browser's token fails with this nonce
    client.get("/login")
    r = client.post("/login", data={"csrf_token": stolen, "username": "erin", "password": "x", "device": "d"})
    assert r.status_code == 403


def test_overview_empty_then_a_grid_of_verdicts(client: TestClient, world: World) -> None:
    page_sign_in(client, world, "erin")
    r = client.get("/")
    assert r.status_code == 200
    assert "No assessment has been run yet" in r.text
    assert "<code>gpaisec assess</code>" in r.text
    plant_finding(world.ws)
    report = assessment.assess(world.ws)
    r = client.get("/")
    for item in report.results:
        assert f'data-item="{item.item_id}" data-verdict="{item.verdict.value}"' in r.text
    assert 'data-item="A4.2(2)"' in r.text
    assert f'data-verdict="no_evidence">{report.summary["no_evidence"]}<' in r.text
    assert 'class="sev-high">high</th><td>1</td>' in r.text
    assert report.run_id in r.text  # the trend table


def test_registry_shows_copies_and_resolves_with_a_reason(client: TestClient, world: World) -> None:
    fid = plant_finding(world.ws)
    csrf = page_sign_in(client, world, "erin")
    r = client.get("/registry")
    assert "atlas:v3" in r.text
    assert fid in r.text
    # Without the form's CSRF token: refused, nothing changes.
    r = client.post("/registry", data={"finding_id": fid, "reason": "wiped"})
    assert r.status_code == 403
    assert registry.list_findings(world.ws, open_only=True)
    r = client.post("/registry", data={"csrf_token": csrf, "finding_id": fid, "reason": ""})
    assert r.status_code == 400
    r = client.post("/registry", data={"csrf_token": csrf, "finding_id": fid, "reason": "short"})
    assert r.status_code == 400
    assert "at least 10 characters" in r.text
    r = client.post("/registry", data={"csrf_token": csrf, "finding_id": "fnd_nope", "reason": "stick wiped"})
    assert r.status_code == 404
    r = client.post("/registry", data={"csrf_token": csrf, "finding_id": fid, "reason": "stick wiped"})
    assert r.status_code == 200, r.text
    assert f"finding {fid} resolved" in r.text
    assert not registry.list_findings(world.ws, open_only=True)
    (done,) = registry.list_findings(world.ws)
    assert done.resolution == "stick wiped"
    assert done.resolved_by == "user:erin"


def test_approvers_read_but_do_not_resolve_or_audit(client: TestClient, world: World) -> None:
    fid = plant_finding(world.ws)
    csrf = page_sign_in(client, world, "bob")
    r = client.get("/registry")
    assert r.status_code == 200
    assert 'action="/registry"' not in r.text
    r = client.post("/registry", data={"csrf_token": csrf, "finding_id": fid, "reason": "stick wiped"})
    assert r.status_code == 403
    assert client.get("/audit").status_code == 403
    r = client.post("/reports", data={"csrf_token": csrf, "chapter": "safety-security"})
    assert r.status_code == 403
    assert assessment.latest_report(world.ws) is None


def test_people_without_a_role_see_no_data(client: TestClient, world: World) -> None:
    plant_finding(world.ws, "SECRET-SUMMARY")
    page_sign_in(client, world, "alice")
    for path in ("/", "/registry", "/audit", "/reports", "/reports/download?format=json"):
        r = client.get(path)
        assert r.status_code == 403, path
        assert "SECRET-SUMMARY" not in r.text


def test_audit_filters_and_inclusion_proof(client: TestClient, world: World) -> None:
    fid = plant_finding(world.ws)
    page_sign_in(client, world, "erin")
    r = client.get("/audit", params={"action": "finding.open"})
    assert r.status_code == 200
    assert fid in r.text
    assert "login" not in r.text.split("<tbody>")[1]
    (event,) = [e for e in _events(world.ws) if e.action == "finding.open"]
    r = client.get("/audit", params={"action": "finding.open", "proof": str(event.seq)})
    assert r.status_code == 200
    assert f"Inclusion proof of event {event.seq}" in r.text
    assert client.get("/audit", params={"actor": "x\x01"}).status_code == 400
    assert client.get("/audit", params={"proof": "-1"}).status_code == 400
    assert "No audit events match" in client.get("/audit", params={"actor": "user:nobody"}).text


def _events(ws: Workspace) -> list[object]:
    from gpaisec.audit import service

    return list(service.log(ws, limit=None))


@pytest.mark.parametrize(
    ("fmt", "marker"), [("json", '"run_id"'), ("oscal", "assessment-results"), ("html", "<")]
)
def test_reports_run_and_download(client: TestClient, world: World, fmt: str, marker: str) -> None:
    csrf = page_sign_in(client, world, "erin")
    assert "No assessment has been run" in client.get("/reports").text
    assert client.get(f"/reports/download?format={fmt}").status_code == 404
    assert client.post("/reports", data={"chapter": "safety-security"}).status_code == 403
    r = client.post("/reports", data={"csrf_token": csrf, "chapter": "safety-security"})
    assert r.status_code == 200
    report = assessment.latest_report(world.ws)
    assert report is not None
    assert report.actor == "user:erin"
    assert f"assessment {report.run_id} finished" in r.text
    r = client.get("/reports/download", params={"run": report.run_id, "format": fmt})
    assert r.status_code == 200
    assert marker in r.text
    assert r.headers["content-disposition"].startswith("attachment;")
    assert client.get("/reports/download", params={"format": "pdf"}).status_code == 400
    assert client.get("/reports/download", params={"run": "run_missing"}).status_code == 404


def test_sign_out_revokes_the_session(client: TestClient, world: World) -> None:
    csrf = page_sign_in(client, world, "erin")
    assert client.post("/logout", data={}).status_code == 403
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/v1/me").status_code == 401


def test_pages_get_the_page_csp_and_the_api_keeps_its_own(client: TestClient, world: World) -> None:
    for path in ("/login", "/static/dashboard.css"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.headers["content-security-policy"] == PAGE_CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
    for path in ("/api/v1/me", "/nothing-here", "/api/v1/nothing"):
        assert client.get(path).headers["content-security-policy"] == JSON_CSP
    assert "text/css" in client.get("/static/dashboard.css").headers["content-type"]


def test_templates_have_no_inline_script_or_style_and_label_every_input() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        # Scripts only as files from the package: no inline code, no event-handler attributes.
        scripts = re.findall(r"<script[^>]*>.*?</script>", text, flags=re.S)
        assert text.count("<script") == len(scripts), template
        for tag in scripts:
            assert re.fullmatch(r'<script src="/static/[a-z-]+\.js" defer></script>', tag), (template, tag)
        assert not re.search(r"\son[a-z]+=", text), template
        assert "style=" not in text, template
        assert "<style" not in text, template
        assert "http://" not in text, template  # no CDN
        assert "https://" not in text, template
        for line in text.splitlines():
            if "<input id=" in line or "<select id=" in line or "<textarea id=" in line:
                ident = line.split('id="', 1)[1].split('"', 1)[0]
                assert f'for="{ident}"' in text, (template, ident)


def test_overview_and_api_show_the_deadlines(client: TestClient, world: World) -> None:
    page_sign_in(client, world, "erin")
    html = client.get("/").text
    table = html.split('id="deadlines"')[1].split("</table>")[0]
    assert "no review has ever been closed" in table
    assert 'href="/measures/A4.3(1)"' in table
    rows = client.get("/api/v1/assessments/deadlines", params={"days": 30}).json()
    assert rows[0]["kind"] == "access_review"
    assert rows[0]["overdue"] is True
    assert client.get("/api/v1/assessments/deadlines", params={"days": 0}).status_code == 422
