"""The committed hostile sealed files (tests/fixtures/sealed/, built by scripts/make_sealed_fixtures.py).

Each is opened with the real files API and the test-only key committed beside them: every hostile
file raises SealedIntegrityError with the message its entry in the script's EXPECTED names, and no
plaintext is left in the destination; the good one opens to its plaintext.
"""

from __future__ import annotations

import importlib.util
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import blake3
import pytest

from gpaisec.crypto import SealedIntegrityError, open_file, unseal_to
from gpaisec.crypto.local import LocalKeyProvider

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_sealed_fixtures.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sealed_fixtures", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_sealed_fixtures", module)
    spec.loader.exec_module(module)
    return module


mk = _load_script()
FIXTURES: Path = mk.HERE
HOSTILE = sorted(n for n, e in mk.EXPECTED.items() if e.step != "opens")
# Steps 1-3 refuse the file before open_file returns; steps 4-5 while it is read.
HEADER_STEPS = {"size", "slot"}


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalKeyProvider]:
    with mk.provider(FIXTURES / mk.KEY_DIR) as p:
        yield p


def verdict(path: Path, provider: LocalKeyProvider, tmp: Path) -> tuple[str, str]:
    """What the real API does with ``path``: ("opens", digest) or (stage, message without the path).

    Along the way, asserts that a refused file leaves no plaintext in a regular file or a buffer,
    and that unseal_to (parallel and serial), open_file and iteration give the same reason.
    """
    out = tmp / f"{path.name}.out"
    out.write_bytes(b"keep")
    refused: SealedIntegrityError | None = None
    with out.open("r+b") as fh:
        fh.seek(0, io.SEEK_END)
        try:
            digest = unseal_to(path, fh.fileno(), provider, workers=2)
        except SealedIntegrityError as exc:
            refused = exc
    buf = io.BytesIO()
    if refused is None:
        assert out.read_bytes()[4:] == mk.plaintext("good")
        unseal_to(path, buf, provider, workers=1)
        assert buf.getvalue() == mk.plaintext("good")
        return "opens", digest.hex()
    assert out.read_bytes() == b"keep", "plaintext was left in the destination file"
    with pytest.raises(SealedIntegrityError) as serial:
        unseal_to(path, buf, provider, workers=1)
    assert buf.getvalue() == b"", "plaintext was left in the destination buffer"
    assert serial.value.message == refused.message
    try:
        reader = open_file(path, provider)
    except SealedIntegrityError as at_open:
        stage, message = "open_file", at_open.message
    else:
        with reader, pytest.raises(SealedIntegrityError) as at_read:
            b"".join(reader)
        stage, message = "read", at_read.value.message
    assert message == refused.message
    return stage, message.replace(str(path), "<file>")


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_fixture_is_refused_with_its_reason(
    name: str, provider: LocalKeyProvider, tmp_path: Path
) -> None:
    expected = mk.EXPECTED[name]
    stage, message = verdict(FIXTURES / name, provider, tmp_path)
    assert stage == ("open_file" if expected.step in HEADER_STEPS else "read"), message
    assert re.search(expected.match, message), f"{name}: {message!r} does not say {expected.match!r}"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_fixture_gives_a_sink_no_tampered_plaintext(name: str, provider: LocalKeyProvider) -> None:
    """A sink (a pipe, a socket) cannot be taken back: it may get the authenticated chunks before
    the one that fails, never that chunk or a later one, and never plaintext of another file."""
    good = mk.plaintext("good")
    got: list[bytes] = []
    with pytest.raises(SealedIntegrityError), open_file(FIXTURES / name, provider) as reader:
        reader.readall_into(lambda data: got.append(bytes(data)), workers=2)
    delivered = b"".join(got)
    assert good.startswith(delivered)
    assert len(delivered) % mk.CHUNK_SIZE == 0 or delivered == good
    if mk.EXPECTED[name].step != "digest":
        assert len(delivered) < len(good)


def test_good_fixture_opens(provider: LocalKeyProvider, tmp_path: Path) -> None:
    stage, digest = verdict(FIXTURES / "good.sealed", provider, tmp_path)
    assert (stage, digest) == ("opens", blake3.blake3(mk.plaintext("good")).hexdigest())
    with open_file(FIXTURES / "good.sealed", provider) as reader:
        assert reader.slot.slot.key_version == mk.SEALED_VERSION
        assert (
            reader.pread(mk.CHUNK_SIZE - 10, 20)
            == mk.plaintext("good")[mk.CHUNK_SIZE - 10 : mk.CHUNK_SIZE + 10]
        )


def test_script_reproduces_the_committed_fixtures_and_their_verdicts(
    provider: LocalKeyProvider, tmp_path: Path
) -> None:
    built = mk.build()
    assert set(built) == set(mk.EXPECTED) == {p.name for p in FIXTURES.glob("*.sealed")}
    (tmp_path / "rebuilt").mkdir()
    for name, data in built.items():
        committed = FIXTURES / name
        rebuilt = tmp_path / "rebuilt" / name
        rebuilt.write_bytes(data)
        assert verdict(rebuilt, provider, tmp_path) == verdict(committed, provider, tmp_path), name
        assert data == committed.read_bytes(), f"{name} is stale: run scripts/make_sealed_fixtures.py"
