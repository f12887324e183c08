"""Validate descriptors and manifests, and list a manifest's successors in push order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orascp.descriptor import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_ARTIFACT_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    compute_digest,
    descriptor_for,
    parse_manifest,
    successors,
    validate_digest,
)
from orascp.errors import InvalidContentError

SHA256 = "sha256:" + "ab" * 32
SHA512 = "sha512:" + "cd" * 64
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
FOREIGN = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _d(media_type: str, seed: str) -> dict[str, Any]:
    data = seed.encode()
    return {"mediaType": media_type, "digest": compute_digest(data), "size": len(data)}


def _manifest(media_type: str, obj: dict[str, Any]) -> tuple[Descriptor, bytes]:
    content = json.dumps(obj).encode()
    return descriptor_for(media_type, content), content


# -- digests and descriptors ------------------------------------------------------------------


@pytest.mark.parametrize("digest", [SHA256, SHA512, "sha256:" + "0" * 64])
def test_valid_digests(digest: str) -> None:
    assert validate_digest(digest) == digest


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "AB" * 32,
        "sha256:" + "ab" * 31,
        "sha256:" + "ab" * 33,
        "sha512:" + "ab" * 32,
        "md5:" + "ab" * 16,
        "SHA256:" + "ab" * 32,
        "sha256:" + "g" * 64,
        "sha256:",
        "ab" * 32,
        "",
        "sha256:" + "ab" * 32 + "\n",
        " sha256:" + "ab" * 32,
        "sha256:../../" + "ab" * 29,
    ],
)
def test_invalid_digests(digest: str) -> None:
    with pytest.raises(InvalidContentError, match="invalid digest"):
        validate_digest(digest)


def test_from_json_round_trip() -> None:
    obj = {
        "mediaType": LAYER,
        "digest": SHA256,
        "size": 12,
        "annotations": {"org.opencontainers.image.title": "a.tar.gz"},
        "artifactType": "application/x-test",
        "platform": {"os": "linux", "architecture": "amd64"},
        "urls": ["https://example.com/a"],
    }
    desc = Descriptor.from_json(obj)
    assert desc.title == "a.tar.gz"
    assert desc.algorithm == "sha256"
    assert desc.hex == "ab" * 32
    assert desc.to_json() == obj


def test_equality_ignores_annotations() -> None:
    a = Descriptor(LAYER, SHA256, 3, annotations={"x": "1"})
    b = Descriptor(LAYER, SHA256, 3)
    assert a == b
    assert a != Descriptor(LAYER, SHA256, 4)


@pytest.mark.parametrize(
    ("size", "needle"),
    [
        (-1, "invalid size"),
        (True, "invalid size"),
        (False, "invalid size"),
        (1.0, "invalid size"),
        ("3", "invalid size"),
        (None, "invalid size"),
    ],
)
def test_from_json_refuses_bad_sizes(size: object, needle: str) -> None:
    with pytest.raises(InvalidContentError, match=needle):
        Descriptor.from_json({"mediaType": LAYER, "digest": SHA256, "size": size})


def test_from_json_accepts_zero_size() -> None:
    assert Descriptor.from_json({"mediaType": LAYER, "digest": SHA256, "size": 0}).size == 0


@pytest.mark.parametrize(
    ("digest", "needle"),
    [
        (None, "no digest"),
        (42, "no digest"),
        ("sha256:" + "AB" * 32, "invalid digest"),
        ("sha256:abc", "invalid digest"),
        ("md5:" + "ab" * 16, "invalid digest"),
        ("sha512:" + "ab" * 32, "invalid digest"),
        ("sha256:" + "ab" * 32 + "\n", "invalid digest"),
    ],
)
def test_from_json_refuses_bad_digests(digest: object, needle: str) -> None:
    with pytest.raises(InvalidContentError, match=needle):
        Descriptor.from_json({"mediaType": LAYER, "digest": digest, "size": 1})


@pytest.mark.parametrize(
    "media_type",
    [
        None,
        7,
        "",
        "nolash",
        "application/",
        "/json",
        "application/json/extra",
        "application/json; charset=utf-8",
        "application json",
        "application/json\n",
        "a/" + "b" * 128,
    ],
)
def test_from_json_refuses_bad_media_types(media_type: object) -> None:
    with pytest.raises(InvalidContentError, match="invalid mediaType"):
        Descriptor.from_json({"mediaType": media_type, "digest": SHA256, "size": 1})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("annotations", {"a": 1}),
        ("annotations", ["a"]),
        ("artifactType", 3),
        ("platform", "linux/amd64"),
        ("urls", "https://example.com"),
        ("urls", [1]),
    ],
)
def test_from_json_refuses_malformed_optional_fields(field: str, value: object) -> None:
    with pytest.raises(InvalidContentError, match="malformed"):
        Descriptor.from_json({"mediaType": LAYER, "digest": SHA256, "size": 1, field: value})


@pytest.mark.parametrize("obj", [None, [], "x", 3])
def test_from_json_refuses_non_objects(obj: object) -> None:
    with pytest.raises(InvalidContentError, match="not a JSON object"):
        Descriptor.from_json(obj)


# -- manifests --------------------------------------------------------------------------------


def test_parse_manifest_refuses_non_json() -> None:
    with pytest.raises(InvalidContentError, match="not valid JSON"):
        parse_manifest(OCI_MANIFEST, b"{not json")
    with pytest.raises(InvalidContentError, match="not valid JSON"):
        parse_manifest(OCI_MANIFEST, b"\xff\xfe")


@pytest.mark.parametrize("content", [b"[]", b"3", b'"x"', b"null"])
def test_parse_manifest_refuses_non_objects(content: bytes) -> None:
    with pytest.raises(InvalidContentError, match="not a JSON object"):
        parse_manifest(OCI_MANIFEST, content)


def test_parse_manifest_refuses_a_disagreeing_media_type() -> None:
    content = json.dumps({"mediaType": OCI_INDEX, "manifests": []}).encode()
    with pytest.raises(InvalidContentError, match="declares mediaType"):
        parse_manifest(OCI_MANIFEST, content)


def test_parse_manifest_accepts_a_missing_media_type() -> None:
    assert parse_manifest(OCI_INDEX, b'{"manifests": []}') == {"manifests": []}


def test_manifest_successors_subject_then_config_then_layers() -> None:
    subject, config = _d(OCI_MANIFEST, "subject"), _d(CONFIG, "config")
    layers = [_d(LAYER, f"layer{i}") for i in range(3)]
    desc, content = _manifest(
        OCI_MANIFEST,
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "layers": layers,
            "config": config,
            "subject": subject,
        },
    )
    out = successors(desc, content)
    assert [d.digest for d in out] == [
        subject["digest"],
        config["digest"],
        *(layer["digest"] for layer in layers),
    ]
    assert out[0].media_type == OCI_MANIFEST


def test_index_successors() -> None:
    children = [_d(OCI_MANIFEST, f"m{i}") for i in range(3)]
    subject = _d(OCI_MANIFEST, "subject")
    desc, content = _manifest(
        OCI_INDEX, {"schemaVersion": 2, "manifests": children, "subject": subject}
    )
    assert [d.digest for d in successors(desc, content)] == [
        subject["digest"],
        *(c["digest"] for c in children),
    ]


def test_empty_index_has_no_successors() -> None:
    desc, content = _manifest(OCI_INDEX, {"schemaVersion": 2, "manifests": []})
    assert successors(desc, content) == []
    desc, content = _manifest(OCI_INDEX, {"schemaVersion": 2})
    assert successors(desc, content) == []


def test_docker_manifest_successors_ignore_subject() -> None:
    config, layer = _d(DOCKER_CONFIG, "cfg"), _d(DOCKER_LAYER, "layer")
    desc, content = _manifest(
        DOCKER_MANIFEST,
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config,
            "layers": [layer],
            "subject": _d(OCI_MANIFEST, "s"),
        },
    )
    assert [d.digest for d in successors(desc, content)] == [config["digest"], layer["digest"]]


def test_docker_manifest_list_successors() -> None:
    children = [_d(DOCKER_MANIFEST, "a"), _d(DOCKER_MANIFEST, "b")]
    desc, content = _manifest(
        DOCKER_MANIFEST_LIST,
        {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": children},
    )
    assert [d.digest for d in successors(desc, content)] == [c["digest"] for c in children]


def test_artifact_manifest_successors() -> None:
    subject, blob = _d(OCI_MANIFEST, "s"), _d(LAYER, "b")
    desc, content = _manifest(
        OCI_ARTIFACT_MANIFEST,
        {"mediaType": OCI_ARTIFACT_MANIFEST, "blobs": [blob], "subject": subject},
    )
    assert [d.digest for d in successors(desc, content)] == [subject["digest"], blob["digest"]]


def test_foreign_layers_are_dropped() -> None:
    config = _d(CONFIG, "c")
    kept = _d(LAYER, "kept")
    oci_foreign = _d(FOREIGN, "foreign") | {"urls": ["https://example.com/f"]}
    docker_foreign = _d(DOCKER_FOREIGN, "dforeign")
    desc, content = _manifest(
        OCI_MANIFEST,
        {"schemaVersion": 2, "config": config, "layers": [oci_foreign, kept, docker_foreign]},
    )
    assert [d.digest for d in successors(desc, content)] == [config["digest"], kept["digest"]]


def test_unknown_media_type_has_no_successors() -> None:
    content = json.dumps({"config": _d(CONFIG, "c"), "layers": [_d(LAYER, "l")]}).encode()
    assert successors(descriptor_for("application/x-custom+json", content), content) == []
    assert successors(descriptor_for(LAYER, b"\x00binary"), b"\x00binary") == []


def test_manifest_without_config_is_refused() -> None:
    desc, content = _manifest(OCI_MANIFEST, {"schemaVersion": 2, "layers": []})
    with pytest.raises(InvalidContentError, match="no config"):
        successors(desc, content)


def test_malformed_layer_list_is_refused() -> None:
    desc, content = _manifest(OCI_MANIFEST, {"config": _d(CONFIG, "c"), "layers": {"a": 1}})
    with pytest.raises(InvalidContentError, match="malformed"):
        successors(desc, content)


def test_bad_child_descriptor_is_refused() -> None:
    bad = {"mediaType": OCI_MANIFEST, "digest": "sha256:short", "size": 1}
    desc, content = _manifest(OCI_INDEX, {"manifests": [bad]})
    with pytest.raises(InvalidContentError, match="invalid digest"):
        successors(desc, content)
