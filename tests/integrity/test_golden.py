"""Committed fixtures: signatures made by model-signing 1.1.1, and hostile ones built from them.

They are built by ``assets/make_assets.py`` and do not need model-signing at test time, so a
change on either side of the format shows up here even where model-signing is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpaisec.integrity import HashParams, Problem, VerificationError, hash_directory, verify
from tests.integrity.assets.make_assets import golden_model

ASSETS = Path(__file__).parent / "assets"
PUBLIC = ASSETS / "signer.pub"
GIT = (".git", ".gitattributes", ".github", ".gitignore")

GOLDEN = {
    "ms-sha256-files.sig": HashParams(algorithm="sha256", ignore_paths=GIT),
    "ms-blake3-files.sig": HashParams(algorithm="blake3", ignore_paths=GIT),
    "ms-sha256-shards.sig": HashParams(
        algorithm="sha256", method="shards", shard_size=16_384, ignore_paths=GIT
    ),
}

# Canonical manifest digests of the golden model: a change breaks every stored manifest.
MANIFEST_DIGESTS = {
    "ms-blake3-files.sig": "sha256:c8f148706e93016e62ecbeb072b16cb5b9b44305991517d4279562f2ffda2228",
    "ms-sha256-files.sig": "sha256:fb0845d28a1c917ff25e9d489d8bd02c915fa3427fbe8e32c2ec212b466c437b",
    "ms-sha256-shards.sig": "sha256:689a3fd8c82d39c9ca1a28a1687b3789ef1fdba19bdebbd348aeb14ff016dc30",
}


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    return golden_model(tmp_path / "golden-model")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_model_signing_signatures_verify(golden: Path, name: str) -> None:
    manifest = verify(golden, ASSETS / name, PUBLIC)
    assert manifest.params == GOLDEN[name]
    assert manifest.model_name == "golden-model"
    assert manifest == hash_directory(golden, GOLDEN[name])
    assert manifest.digest() == MANIFEST_DIGESTS[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_model_signing_signatures_catch_a_changed_file(golden: Path, name: str) -> None:
    (golden / "a" / "c").write_bytes(b"changed")
    with pytest.raises(VerificationError) as info:
        verify(golden, ASSETS / name, PUBLIC)
    assert info.value.problem is Problem.CONTENT
    assert info.value.diff is not None
    assert info.value.diff.changed == ("a/c",)


@pytest.mark.parametrize(
    ("name", "problem", "message"),
    [
        ("hostile-payload-edited.sig", Problem.SIGNATURE, "does not verify"),
        ("hostile-path-traversal.sig", Problem.FORMAT, "not a relative path inside the model directory"),
        ("hostile-root-digest-mismatch.sig", Problem.FORMAT, "does not match the resources"),
        ("hostile-media-type.sig", Problem.FORMAT, "mediaType"),
    ],
)
def test_hostile_signatures_are_refused(golden: Path, name: str, problem: Problem, message: str) -> None:
    with pytest.raises(VerificationError) as info:
        verify(golden, ASSETS / name, PUBLIC)
    assert info.value.problem is problem
    assert message in info.value.message
