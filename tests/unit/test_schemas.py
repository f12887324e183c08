"""The plan and all-tags JSON documents match the schemas orascp ships, and the schemas bite."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from orascp.descriptor import Descriptor
from orascp.display.record import Recorder, plan_document, tags_document
from tests.support.schemas import validate

SIDE = {"type": "registry", "reference": "127.0.0.1:5000/app:v1"}
LAYER = Descriptor(
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "sha256:" + "a" * 64,
    1000,
    annotations={"org.opencontainers.image.title": "layer.tar.gz"},
)
CONFIG = Descriptor("application/vnd.oci.image.config.v1+json", "sha256:" + "b" * 64, 10)
ROOT = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "c" * 64, 500)


def plan() -> dict[str, Any]:
    text = plan_document(
        source=SIDE,
        destination=SIDE,
        root=ROOT,
        tags=["v1"],
        steps=[(LAYER, "mount", "team/base"), (CONFIG, "exists", None), (ROOT, "copy", None)],
    )
    document: dict[str, Any] = json.loads(text)
    return document


def tags() -> dict[str, Any]:
    recorder = Recorder()
    recorder.post_copy(LAYER)
    recorder.on_mounted(CONFIG)
    text = tags_document(
        source=SIDE,
        destination=SIDE,
        results=[("v1", ROOT, None), ("v2", None, "source registry: not found")],
        recorder=recorder,
    )
    document: dict[str, Any] = json.loads(text)
    return document


def test_a_plan_matches_its_schema() -> None:
    document = plan()
    validate(document, "cp-plan.schema.json")
    assert document["totals"] == {"nodes": 3, "copy": 1, "mount": 1, "exists": 1, "bytes": 500}
    assert document["nodes"][0]["from"] == "team/base"


def test_an_all_tags_result_matches_its_schema() -> None:
    document = tags()
    validate(document, "cp-tags.schema.json")
    assert [r["tag"] for r in document["results"]] == ["v1", "v2"]


@pytest.mark.parametrize(
    ("name", "build", "spoil"),
    [
        ("cp-plan.schema.json", plan, lambda d: d["nodes"][0].pop("from")),
        ("cp-plan.schema.json", plan, lambda d: d["nodes"][1].update(action="copied")),
        ("cp-plan.schema.json", plan, lambda d: d.update(dryRun=False)),
        ("cp-tags.schema.json", tags, lambda d: d["results"][1].pop("error")),
        ("cp-tags.schema.json", tags, lambda d: d["results"][0].update(error="both")),
        ("cp-tags.schema.json", tags, lambda d: d["nodes"][0].update(action="copy")),
    ],
)
def test_the_schemas_refuse_broken_documents(name: str, build: Any, spoil: Any) -> None:
    document = build()
    spoil(document)
    with pytest.raises(jsonschema.ValidationError):
        validate(document, name)
