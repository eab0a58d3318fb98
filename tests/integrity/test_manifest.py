"""Manifest values: parameter checks, canonical form and digest, JSON round trip, diffs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpaisec.errors import InputError
from gpaisec.integrity import (
    DEFAULT_IGNORE_PATHS,
    DEFAULT_SHARD_SIZE,
    HashParams,
    Manifest,
    ManifestDiff,
    Resource,
)

D1, D2, D3 = "1" * 64, "2" * 64, "3" * 64


def test_default_params_are_blake3_files_with_git_ignored() -> None:
    p = HashParams()
    assert (p.algorithm, p.method, p.shard_size, p.allow_symlinks) == ("blake3", "files", None, False)
    assert p.ignore_paths == tuple(sorted(DEFAULT_IGNORE_PATHS))
    assert p.resource_algorithm == "blake3"


def test_shards_default_size_and_algorithm_name() -> None:
    p = HashParams(algorithm="sha256", method="shards")
    assert p.shard_size == DEFAULT_SHARD_SIZE
    assert p.resource_algorithm == f"sha256-sharded-{DEFAULT_SHARD_SIZE}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "md5"}, "unknown hash algorithm"),
        ({"method": "tensors"}, "unknown hashing method"),
        ({"shard_size": 10}, "only applies to method 'shards'"),
        ({"method": "shards"}, "BLAKE3 manifests are made per file"),
        ({"algorithm": "sha256", "method": "shards", "shard_size": 0}, "at least 1 byte"),
        ({"algorithm": "sha256", "method": "shards", "shard_size": True}, "must be an integer"),
        ({"ignore_paths": ("../outside",)}, "not a relative path"),
        ({"ignore_paths": "README.md"}, "not one string"),
    ],
)
def test_bad_params_are_refused_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        HashParams(**kwargs)  # type: ignore[arg-type]
    assert info.value.diagnostics()


def test_ignore_paths_are_tidied_sorted_and_deduplicated() -> None:
    p = HashParams(ignore_paths=("b/", "./a", "b", "a//c"))
    assert p.ignore_paths == ("a", "a/c", "b")
    assert p.with_ignored("z").ignore_paths == ("a", "a/c", "b", "z")


def test_manifest_sorts_like_model_signing_and_refuses_duplicates() -> None:
    m = Manifest(HashParams(), (Resource("a-b", D1), Resource("a/c", D2), Resource("a.bin", D3)))
    assert [r.path for r in m.resources] == ["a/c", "a-b", "a.bin"]
    with pytest.raises(InputError, match="appears twice"):
        Manifest(HashParams(), (Resource("x", D1), Resource("x", D2)))


@pytest.mark.parametrize(
    ("resource", "params", "message"),
    [
        (Resource("../x", D1), HashParams(), "not a relative path"),
        (Resource("/etc/passwd", D1), HashParams(), "not a relative path"),
        (Resource("x", "ABC"), HashParams(), "32-byte digest"),
        (Resource("x", D1, 0, 3), HashParams(), "shard range in a 'files' manifest"),
        (Resource("x", D1), HashParams(algorithm="sha256", method="shards", shard_size=4), "no shard range"),
        (
            Resource("x", D1, 0, 5),
            HashParams(algorithm="sha256", method="shards", shard_size=4),
            "range of 1 to 4",
        ),
        (
            Resource("x", D1, 3, 3),
            HashParams(algorithm="sha256", method="shards", shard_size=4),
            "range of 1 to 4",
        ),
    ],
)
def test_manifest_refuses_bad_resources(resource: Resource, params: HashParams, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Manifest(params, (resource,))


def test_overlapping_shards_are_refused() -> None:
    p = HashParams(algorithm="sha256", method="shards", shard_size=4)
    with pytest.raises(InputError, match="overlap"):
        Manifest(p, (Resource("x", D1, 0, 4), Resource("x", D2, 2, 6)))


_digests = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_names = st.text(alphabet="abcé-_.", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
_paths = st.lists(_names, min_size=1, max_size=3).map("/".join)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    shards = draw(st.booleans())
    params = (
        HashParams(algorithm="sha256", method="shards", shard_size=draw(st.integers(1, 64)))
        if shards
        else HashParams(algorithm=draw(st.sampled_from(["blake3", "sha256"])))
    )
    paths = draw(st.lists(_paths, unique=True, max_size=6))
    resources = []
    for p in paths:
        if shards:
            assert params.shard_size is not None
            n = draw(st.integers(1, 3))
            for i in range(n):
                start = i * params.shard_size
                resources.append(Resource(p, draw(_digests), start, start + params.shard_size))
        else:
            resources.append(Resource(p, draw(_digests)))
    return Manifest(params, tuple(draw(st.permutations(resources))), model_name=draw(_names))


@given(manifests())
def test_json_round_trip_keeps_everything(m: Manifest) -> None:
    back = Manifest.from_json(m.to_json())
    assert back == m
    assert back.model_name == m.model_name
    assert back.digest() == m.digest()


@given(manifests(), st.data())
def test_digest_changes_when_any_digest_or_path_changes(m: Manifest, data: st.DataObject) -> None:
    if not m.resources:
        return
    i = data.draw(st.integers(0, len(m.resources) - 1))
    r = m.resources[i]
    flipped = r._replace(digest=("0" if r.digest[0] != "0" else "1") + r.digest[1:])
    changed = Manifest(m.params, m.resources[:i] + (flipped,) + m.resources[i + 1 :])
    assert changed.digest() != m.digest()
    assert m.diff(changed).changed == (r.path,)


def test_digest_ignores_model_name_and_input_order() -> None:
    a = Manifest(HashParams(), (Resource("a", D1), Resource("b", D2)), model_name="one")
    b = Manifest(HashParams(), (Resource("b", D2), Resource("a", D1)), model_name="two")
    assert a == b
    assert a.digest() == b.digest()
    assert a.digest().startswith("sha256:")


def test_digest_binds_params() -> None:
    rs = (Resource("a", D1),)
    assert Manifest(HashParams(), rs).digest() != Manifest(HashParams(algorithm="sha256"), rs).digest()
    assert Manifest(HashParams(), rs).digest() != Manifest(HashParams(ignore_paths=()), rs).digest()


def test_canonical_bytes_are_stable() -> None:
    # Golden: a change here breaks every stored manifest digest, so it must be deliberate.
    m = Manifest(HashParams(ignore_paths=()), (Resource("w/b", D2), Resource("a", D1)))
    assert m.canonical_bytes() == (
        b'{"params":{"algorithm":"blake3","allow_symlinks":false,"ignore_paths":[],"method":"files",'
        b'"shard_size":null},"resources":[{"digest":"'
        + D1.encode()
        + b'","path":"a"},{"digest":"'
        + D2.encode()
        + b'","path":"w/b"}],"schema":"gpaisec.integrity.manifest/v1"}'
    )


def test_diff_names_changed_missing_and_extra() -> None:
    expected = Manifest(HashParams(), (Resource("a", D1), Resource("b", D2), Resource("c", D3)))
    actual = Manifest(HashParams(), (Resource("a", D1), Resource("b", D3), Resource("d", D1)))
    diff = expected.diff(actual)
    assert diff == ManifestDiff(changed=("b",), missing=("c",), extra=("d",))
    assert not diff.empty
    assert diff.summary() == "1 changed (b); 1 missing (c); 1 extra (d)"
    assert expected.diff(expected).empty


def test_diff_of_shards_reports_the_file_once() -> None:
    p = HashParams(algorithm="sha256", method="shards", shard_size=4)
    expected = Manifest(p, (Resource("x", D1, 0, 4), Resource("x", D2, 4, 8)))
    truncated = Manifest(p, (Resource("x", D1, 0, 4), Resource("x", D2, 4, 6)))
    assert expected.diff(truncated).changed == ("x",)


def test_diff_refuses_different_params() -> None:
    a = Manifest(HashParams(), ())
    with pytest.raises(InputError, match="different parameters"):
        a.diff(Manifest(HashParams(algorithm="sha256"), ()))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(schema="other/v9"),
        lambda d: d.update(extra=1),
        lambda d: d["params"].update(algorithm="md5"),
        lambda d: d["params"].pop("method"),
        lambda d: d["resources"].append({"path": "../../etc/passwd", "digest": D1}),
        lambda d: d["resources"].append({"path": "x", "digest": D1, "size": 3}),
        lambda d: d["resources"].append({"path": "x", "digest": D1, "start": "0", "end": 3}),
        lambda d: d.update(resources={}),
    ],
)
def test_from_json_refuses_tampered_documents(mutate: object) -> None:
    doc = json.loads(Manifest(HashParams(), (Resource("a", D1),)).to_json())
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(InputError):
        Manifest.from_json(json.dumps(doc))


def test_from_json_refuses_non_json() -> None:
    with pytest.raises(InputError, match="not valid JSON"):
        Manifest.from_json("{not json")
