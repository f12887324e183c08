"""Referrers: the tag schema's tag, reading and extending a referrers index, layouts' subjects."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from orascp.descriptor import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    descriptor_for,
)
from orascp.errors import InvalidContentError, UsageError
from orascp.ocilayout import OCILayout
from orascp.referrers import (
    MODES,
    add_referrer,
    parse_mode,
    parse_referrers_index,
    referrer_descriptor,
    subject_of,
    tag_schema_tag,
)
from tests.support import artifacts

SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(**fields: Any) -> bytes:
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": sha256(b"{}"), "size": 2},
        "layers": [],
    }
    obj.update(fields)
    return json.dumps(obj).encode()


SUBJECT_BYTES = manifest(annotations={"role": "subject"})
SUBJECT = descriptor_for(OCI_MANIFEST, SUBJECT_BYTES)


def entry(desc: Descriptor, **extra: Any) -> dict[str, Any]:
    return {**desc.to_json(), **extra}


def oci_index(*entries: dict[str, Any]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}
    ).encode()


# -- tag_schema_tag ------------------------------------------------------------------------------


def test_tag_schema_tag_replaces_the_colon() -> None:
    digest = sha256(b"x")
    assert tag_schema_tag(digest) == "sha256-" + digest.split(":")[1]


def test_tag_schema_tag_cuts_long_digests_to_a_valid_tag() -> None:
    encoded = hashlib.sha512(b"x").hexdigest()
    assert len(encoded) == 128
    tag = tag_schema_tag(f"sha512:{encoded}")
    assert tag == f"sha512-{encoded[:64]}"
    assert len(tag) <= 128


def test_tag_schema_tag_cuts_the_algorithm_to_32() -> None:
    algorithm = "a" * 40
    assert tag_schema_tag(f"{algorithm}:abc") == f"{'a' * 32}-abc"


# -- subject_of ----------------------------------------------------------------------------------


def test_subject_of_an_oci_manifest() -> None:
    found = subject_of(OCI_MANIFEST, manifest(subject=SUBJECT.to_json()))
    assert found == SUBJECT
    assert found is not None
    assert found.media_type == OCI_MANIFEST


def test_subject_of_an_oci_index() -> None:
    content = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "subject": SUBJECT.to_json()}
    ).encode()
    assert subject_of(OCI_INDEX, content) == SUBJECT


def test_subject_of_none_without_a_subject() -> None:
    assert subject_of(OCI_MANIFEST, manifest()) is None
    assert subject_of(OCI_MANIFEST, manifest(subject=None)) is None


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
def test_docker_types_have_no_subject(media_type: str) -> None:
    content = manifest(mediaType=media_type, subject=SUBJECT.to_json())
    assert subject_of(media_type, content) is None


def test_subject_of_a_blob_is_none() -> None:
    assert subject_of(LAYER, manifest(subject=SUBJECT.to_json())) is None


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        manifest(subject="sha256:abc"),
        manifest(subject={"mediaType": OCI_MANIFEST, "digest": "nope", "size": 1}),
        manifest(subject={"mediaType": OCI_MANIFEST, "digest": SUBJECT.digest, "size": -1}),
    ],
)
def test_subject_of_malformed_content_is_none(content: bytes) -> None:
    assert subject_of(OCI_MANIFEST, content) is None


# -- referrer_descriptor -------------------------------------------------------------------------


def test_referrer_descriptor_takes_artifact_type_and_annotations() -> None:
    content = manifest(artifactType=SIGNATURE, annotations={"k": "v"}, subject=SUBJECT.to_json())
    desc = descriptor_for(OCI_MANIFEST, content)
    listed = referrer_descriptor(desc, content)
    assert listed == desc
    assert listed.artifact_type == SIGNATURE
    assert listed.annotations == {"k": "v"}
    assert listed.to_json() == {
        "mediaType": OCI_MANIFEST,
        "digest": desc.digest,
        "size": len(content),
        "artifactType": SIGNATURE,
        "annotations": {"k": "v"},
    }


def test_referrer_descriptor_falls_back_to_the_config_media_type() -> None:
    content = manifest(
        config={"mediaType": SBOM, "digest": sha256(b"{}"), "size": 2},
        subject=SUBJECT.to_json(),
    )
    listed = referrer_descriptor(descriptor_for(OCI_MANIFEST, content), content)
    assert listed.artifact_type == SBOM
    assert listed.annotations is None


def test_referrer_descriptor_prefers_artifact_type_over_config() -> None:
    content = manifest(
        artifactType=SIGNATURE, config={"mediaType": SBOM, "digest": sha256(b"{}"), "size": 2}
    )
    assert referrer_descriptor(descriptor_for(OCI_MANIFEST, content), content).artifact_type == (
        SIGNATURE
    )


def test_referrer_descriptor_drops_malformed_fields() -> None:
    content = manifest(artifactType=7, annotations={"k": 1}, config="nope")
    desc = descriptor_for(OCI_MANIFEST, content)
    listed = referrer_descriptor(desc, content)
    assert listed.artifact_type is None
    assert listed.annotations is None
    assert listed.to_json() == {"mediaType": OCI_MANIFEST, "digest": desc.digest, "size": desc.size}


def test_referrer_descriptor_drops_empty_annotations() -> None:
    content = manifest(annotations={})
    assert referrer_descriptor(descriptor_for(OCI_MANIFEST, content), content).annotations is None


# -- parse_referrers_index -----------------------------------------------------------------------


def test_parse_referrers_index_lists_manifests() -> None:
    sig = descriptor_for(OCI_MANIFEST, manifest(artifactType=SIGNATURE))
    nested = descriptor_for(OCI_INDEX, oci_index())
    content = oci_index(entry(sig, artifactType=SIGNATURE), entry(nested))
    found = parse_referrers_index(content, SUBJECT.digest)
    assert found == [sig, nested]
    assert found[0].artifact_type == SIGNATURE


def test_parse_referrers_index_drops_the_subject_and_blobs() -> None:
    sig = descriptor_for(OCI_MANIFEST, manifest(artifactType=SIGNATURE))
    blob = descriptor_for(LAYER, b"layer")
    content = oci_index(entry(SUBJECT), entry(blob), entry(sig))
    assert parse_referrers_index(content, SUBJECT.digest) == [sig]


def test_parse_referrers_index_of_the_subject_itself_lists_its_other_children_only() -> None:
    # A registry that answers the tag sha256-<hex> with the manifest sha256:<hex> (an index):
    # the caller checks the digest; the parser at least never returns the subject.
    child = descriptor_for(OCI_MANIFEST, manifest())
    content = oci_index(entry(child))
    subject = descriptor_for(OCI_INDEX, content)
    assert [d.digest for d in parse_referrers_index(content, subject.digest)] == [child.digest]


def test_parse_referrers_index_empty() -> None:
    assert parse_referrers_index(oci_index(), SUBJECT.digest) == []
    assert parse_referrers_index(b'{"schemaVersion": 2}', SUBJECT.digest) == []


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"manifests": {}}', b'"x"'])
def test_parse_referrers_index_refuses_what_is_not_an_index(content: bytes) -> None:
    with pytest.raises(InvalidContentError):
        parse_referrers_index(content, SUBJECT.digest)


def test_parse_referrers_index_refuses_a_malformed_entry() -> None:
    content = oci_index({"mediaType": OCI_MANIFEST, "digest": "sha256:zz", "size": 1})
    with pytest.raises(InvalidContentError):
        parse_referrers_index(content, SUBJECT.digest)


# -- add_referrer --------------------------------------------------------------------------------


def _sig(n: int) -> Descriptor:
    content = manifest(artifactType=SIGNATURE, annotations={"n": str(n)})
    return referrer_descriptor(descriptor_for(OCI_MANIFEST, content), content)


def test_add_referrer_to_nothing_makes_an_index() -> None:
    sig = _sig(1)
    new = add_referrer(None, sig)
    assert new is not None
    assert json.loads(new) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [sig.to_json()],
    }
    assert parse_referrers_index(new, SUBJECT.digest) == [sig]


def test_add_referrer_appends_and_keeps_other_fields() -> None:
    first, second = _sig(1), _sig(2)
    old = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [first.to_json()],
            "annotations": {"keep": "me"},
        }
    ).encode()
    new = add_referrer(old, second)
    assert new is not None
    obj = json.loads(new)
    assert obj["manifests"] == [first.to_json(), second.to_json()]
    assert obj["annotations"] == {"keep": "me"}


def test_add_referrer_already_listed_is_none() -> None:
    sig = _sig(1)
    once = add_referrer(None, sig)
    assert once is not None
    assert add_referrer(once, sig) is None
    # Listed under the same digest with other annotations: still listed.
    assert add_referrer(once, sig.with_annotations({"other": "x"})) is None


@pytest.mark.parametrize("old", [b"not json", b"[]", b'{"manifests": "x"}'])
def test_add_referrer_to_garbage_starts_a_new_index(old: bytes) -> None:
    sig = _sig(1)
    new = add_referrer(old, sig)
    assert new is not None
    assert json.loads(new)["manifests"] == [sig.to_json()]


# -- parse_mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_parse_mode_accepts_the_two_modes(mode: str) -> None:
    assert parse_mode(mode, "--from-distribution-spec") == mode


@pytest.mark.parametrize("value", ["v2", "", "V1.1-REFERRERS-API", "v1.1-referrers-api "])
def test_parse_mode_refuses_others(value: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_mode(value, "--to-distribution-spec")
    message = str(caught.value)
    assert "--to-distribution-spec" in message
    assert "v1.1-referrers-api" in message
    assert "v1.1-referrers-tag" in message


# -- OCILayout.referrers -------------------------------------------------------------------------


def _desc(blob: artifacts.Blob) -> Descriptor:
    return Descriptor(blob.media_type, blob.digest, len(blob.data))


def _referrers(path: Path, blob: artifacts.Blob) -> list[Descriptor]:
    layout = OCILayout.open_source(path)
    return asyncio.run(layout.referrers(_desc(blob)))


def test_layout_referrers_found_through_index_json(tmp_path: Path) -> None:
    img = artifacts.image([artifacts.layer(b"img")])
    sig = artifacts.image(
        [artifacts.layer(b"sig")],
        artifact_type=SIGNATURE,
        subject=img.root,
        annotations={"k": "v"},
    )
    sbom = artifacts.image([artifacts.layer(b"sbom")], artifact_type=SBOM, subject=img.root)
    att = artifacts.image([artifacts.layer(b"att")], subject=sig.root)
    artifacts.write_layout(tmp_path, img, "v1")
    for art in (sig, sbom, att):
        artifacts.write_layout(tmp_path, art)

    found = _referrers(tmp_path, img.root)
    assert sorted(d.digest for d in found) == sorted([sig.digest, sbom.digest])
    by_digest = {d.digest: d for d in found}
    assert by_digest[sig.digest].artifact_type == SIGNATURE
    assert by_digest[sig.digest].annotations == {"k": "v"}
    assert by_digest[sbom.digest].artifact_type == SBOM
    assert by_digest[sig.digest].size == len(sig.root.data)
    # The attestation has no artifactType: its config's media type stands in.
    assert [(d.digest, d.artifact_type) for d in _referrers(tmp_path, sig.root)] == [
        (att.digest, artifacts.OCI_CONFIG)
    ]
    assert _referrers(tmp_path, att.root) == []


def test_layout_referrers_inside_an_index(tmp_path: Path) -> None:
    img = artifacts.image([artifacts.layer(b"img")])
    sig = artifacts.image([artifacts.layer(b"sig")], artifact_type=SIGNATURE, subject=img.root)
    holder = artifacts.index([(sig, None)])
    artifacts.write_layout(tmp_path, img, "v1")
    artifacts.write_layout(tmp_path, holder, "sigs")
    assert [d.digest for d in _referrers(tmp_path, img.root)] == [sig.digest]


def test_layout_referrers_only_reachable_manifests(tmp_path: Path) -> None:
    img = artifacts.image([artifacts.layer(b"img")])
    sig = artifacts.image([artifacts.layer(b"sig")], artifact_type=SIGNATURE, subject=img.root)
    artifacts.write_layout(tmp_path, img, "v1")
    artifacts.write_layout_blob(tmp_path, sig.root.data)  # stored, but listed nowhere
    assert _referrers(tmp_path, img.root) == []


def test_layout_referrers_skip_damaged_and_missing_manifests(tmp_path: Path) -> None:
    img = manifest()
    img_json = descriptor_for(OCI_MANIFEST, img).to_json()
    sig = manifest(artifactType=SIGNATURE, subject=img_json)
    damaged = manifest(artifactType=SBOM, subject=img_json)
    missing = manifest(artifactType="application/vnd.example.missing", subject=img_json)
    artifacts.write_raw_layout(
        tmp_path,
        [img, sig],
        [img_json, *(descriptor_for(OCI_MANIFEST, m).to_json() for m in (sig, damaged, missing))],
    )
    # The damaged referrer's blob holds other bytes of the same length.
    path = tmp_path / "blobs" / "sha256" / sha256(damaged).split(":")[1]
    path.write_bytes(damaged.replace(b"sbom", b"xxxx"))
    assert path.stat().st_size == len(damaged)

    found = _referrers(tmp_path, artifacts.Blob(OCI_MANIFEST, img))
    assert [d.digest for d in found] == [sha256(sig)]
    assert found[0].artifact_type == SIGNATURE


def test_layout_referrers_ignore_docker_manifests(tmp_path: Path) -> None:
    img = manifest()
    docker = manifest(
        mediaType=DOCKER_MANIFEST, subject=descriptor_for(OCI_MANIFEST, img).to_json()
    )
    artifacts.write_raw_layout(
        tmp_path,
        [img, docker],
        [
            descriptor_for(OCI_MANIFEST, img).to_json(),
            descriptor_for(DOCKER_MANIFEST, docker).to_json(),
        ],
    )
    assert _referrers(tmp_path, artifacts.Blob(OCI_MANIFEST, img)) == []
