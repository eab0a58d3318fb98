"""The CLI end to end through ``main(argv)``: exit codes, JSON output, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpaisec.cli.app import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def ws(tmp_path: Path) -> str:
    return str(tmp_path / "ws")


def test_demo_prints_a_gap_table_over_every_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "demo"
    rc, out, err = run(capsys, "--workspace", str(home), "demo", "--format", "json")
    assert rc == 0, err
    doc = json.loads(out)["assessment"]
    ids = [r["id"] for r in doc["results"]]
    assert len(ids) == 57
    assert sum(i.startswith("A4.") for i in ids) == 25
    assert sum(i.startswith("M") for i in ids) == 32
    verdicts = {r["id"]: r["verdict"] for r in doc["results"]}
    assert verdicts["M1.1"] == "met"
    assert verdicts["A4.2(5)"] == "not_met"
    assert verdicts["M10.2"] == "not_applicable"
    # The planted copy on the contractor's unmanaged laptop turns both 4.2 objectives red.
    assert verdicts["A4.2(1)"] == "not_met"
    assert verdicts["A4.2(2)"] == "not_met"
    a422 = next(r for r in doc["results"] if r["id"] == "A4.2(2)")
    assert any("laptop-jdoe" in reason for reason in a422["reasons"])
    # The demo ran through the real services: the audit log verifies.
    rc, out, err = run(capsys, "--workspace", str(home), "audit", "verify")
    assert rc == 0, err
    # Running it again rebuilds the demo workspace instead of failing.
    rc, _, err = run(capsys, "--workspace", str(home), "demo")
    assert rc == 0, err


def test_demo_refuses_a_directory_it_did_not_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("data")
    rc, _, err = run(capsys, "--workspace", str(precious), "demo")
    assert rc == 3
    assert "refusing to overwrite" in err
    assert (precious / "keep.txt").read_text() == "data"


def test_attest_assess_and_export(ws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "charter.txt"
    doc.write_text("internal audit charter")
    rc, out, err = run(
        capsys,
        "-w",
        ws,
        "attest",
        "M8.1",
        "--claim",
        "partly_met",
        "--by",
        "Dr. Vogt",
        "--statement",
        "Board committee and CRO assigned; audit charter pending.",
        "--document",
        str(doc),
        "--format",
        "json",
    )
    assert rc == 0, err
    att = json.loads(out)
    assert att["item"] == "M8.1"
    assert len(att["evidence"]) == 1
    for fmt in ("json", "html", "oscal"):
        target = tmp_path / f"report.{fmt}"
        rc, _, err = run(capsys, "-w", ws, "assess", "--format", fmt, "--output", str(target))
        assert rc == 0, err
        text = target.read_text()
        assert "M8.1" in text
        assert not list(tmp_path.glob(f".report.{fmt}.*"))  # no temp file left behind
    report = json.loads((tmp_path / "report.json").read_text())
    m81 = next(r for r in report["assessment"]["results"] if r["id"] == "M8.1")
    assert m81["verdict"] == "partly_met"
    rc, out, _ = run(capsys, "-w", ws, "assessments", "--format", "json")
    assert rc == 0
    assert len(json.loads(out)) == 3


def test_bad_input_is_one_line_and_changes_nothing(
    ws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(
        capsys, "-w", ws, "attest", "M9.9", "--claim", "met", "--by", "x", "--statement", "x" * 30
    )
    assert rc == 5
    assert err.count("\n") == 1
    assert "Traceback" not in err
    rc, _, err = run(
        capsys, "-w", ws, "attest", "M1.1", "--claim", "met", "--by", "x", "--statement", "short"
    )
    assert rc == 2
    assert "too short" in err
    rc, out, _ = run(capsys, "-w", ws, "attestations", "list", "--format", "json")
    assert json.loads(out) == []
    missing_dir = tmp_path / "no" / "such" / "dir" / "r.html"
    rc, _, err = run(capsys, "-w", ws, "assess", "--format", "html", "--output", str(missing_dir))
    assert rc == 2
    assert "cannot write" in err
    rc, _, err = run(capsys, "-w", ws, "assess", "--format", "pdf")
    assert rc == 2


def test_registry_commands(ws: str, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["models", "add", "atlas", "--unreleased", "--training-flop", "3.2e25"],
        ["sites", "add", "dc-frankfurt-1"],
        ["devices", "add", "gpu-node-17", "--site", "dc-frankfurt-1", "--managed", "--disk-encrypted"],
        ["devices", "add", "laptop-9"],
    ):
        rc, _, err = run(capsys, "-w", ws, *args)
        assert rc == 0, err
    rc, out, _ = run(capsys, "-w", ws, "devices", "list", "--format", "json")
    devices = {d["name"]: d for d in json.loads(out)}
    assert devices["gpu-node-17"]["managed"] is True
    assert devices["laptop-9"]["managed"] is False
    rc, _, err = run(capsys, "-w", ws, "models", "add", "atlas")
    assert rc == 2
    assert "already exists" in err
    rc, out, _ = run(capsys, "-w", ws, "findings", "list", "--open", "--format", "json")
    assert json.loads(out) == []


def test_verbose_shows_the_traceback(ws: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "-w", ws, "--verbose", "catalog", "show", "Z9")
    assert rc == 5
    assert "Traceback" in err


@pytest.mark.parametrize(
    "args", [["catalog", "list", "--bogus"], ["assess", "--chapter"], ["no-such-command"]]
)
def test_usage_errors_exit_2_without_a_traceback(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, *args)
    assert rc == 2
    assert "Traceback" not in err
    assert "Error" in err


def test_a_corrupt_catalog_stops_before_anything_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpaisec.catalog import _loader

    corrupt = Path(__file__).parent.parent / "catalog" / "fixtures" / "duplicate-id"
    assert corrupt.is_dir()
    monkeypatch.setenv("GPAISEC_CATALOG", str(corrupt))
    _loader._custom_cached.cache_clear()
    ws = tmp_path / "ws"
    rc, _, err = run(capsys, "-w", str(ws), "assess")
    assert rc == 3
    assert err.count("\n") == 1
    assert "duplicate" in err.lower()
    assert not ws.exists()


def test_register_discover_and_alert(ws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpaisec.weights.sample import write_sample_model

    ckpt = tmp_path / "gpu" / "srv" / "ckpt" / "atlas"
    shards = write_sample_model(ckpt / "v3", seed=5, layers=2, dim=128, shards=2)
    for args in (
        ["models", "add", "atlas", "--unreleased"],
        ["devices", "add", "gpu-node-17", "--managed", "--disk-encrypted"],
        ["devices", "add", "laptop-9", "--unmanaged"],
        ["models", "versions", "add", "atlas", "v3", "--from", str(ckpt / "v3")],
        ["locations", "add", f"gpu-node-17:{ckpt}", "--approve", "atlas:v3"],
    ):
        rc, _, err = run(capsys, "-w", ws, *args)
        assert rc == 0, (args, err)
    rc, out, err = run(
        capsys, "-w", ws, "discover", str(tmp_path / "gpu"), "--device", "gpu-node-17", "-f", "json"
    )
    assert rc == 0, err
    assert len(json.loads(out)["matches"]) == 2
    stolen = tmp_path / "laptop" / "Desktop"
    stolen.mkdir(parents=True)
    (stolen / "notes.pdf").write_bytes(shards[0].read_bytes())
    rc, out, err = run(
        capsys, "-w", ws, "discover", str(tmp_path / "laptop"), "--device", "laptop-9", "-f", "json"
    )
    assert rc == 1  # new findings: a problem was found
    assert "ALERT" in err
    result = json.loads(out)
    assert {f["kind"] for f in result["new_findings"]} == {"unmanaged_device_copy", "unregistered_location"}
    rc, out, _ = run(capsys, "-w", ws, "registry", "show", "-f", "json")
    (version,) = json.loads(out)
    assert {c["approved"] for c in version["copies"]} == {True, False}
    rc, out, _ = run(capsys, "-w", ws, "audit", "verify")
    assert rc == 0


def test_weights_sign_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gpaisec.weights.sample import write_sample_model

    model = tmp_path / "model"
    shards = write_sample_model(model, seed=9, layers=1, dim=64, shards=2)
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "k.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ws = str(tmp_path / "ws")
    sig = str(tmp_path / "model.sig")
    rc, _, err = run(
        capsys, "-w", ws, "weights", "sign", str(model), "--key", str(tmp_path / "k.pem"), "-o", sig
    )
    assert rc == 0, err
    verify = [
        "-w",
        ws,
        "weights",
        "verify",
        str(model),
        "--signature",
        sig,
        "--public-key",
        str(tmp_path / "k.pub"),
    ]
    rc, _, err = run(capsys, *verify)
    assert rc == 0, err
    data = bytearray(shards[1].read_bytes())
    data[-1] ^= 1
    shards[1].write_bytes(bytes(data))
    rc, _, err = run(capsys, *verify)
    assert rc == 4
    assert shards[1].name in err
    assert "Traceback" not in err
