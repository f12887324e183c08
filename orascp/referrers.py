"""Find and record referrers: manifests whose ``subject`` points at another manifest.

distribution-spec v1.1 offers two ways, both handled here:

- the Referrers API, ``GET /v2/<name>/referrers/<digest>``, answering an image index of
  descriptors (paged with ``Link`` headers);
- the referrers tag schema, for registries without the API: an image index stored under the tag
  ``<alg>-<hex>`` of the subject's digest, which clients that push a referrer update themselves.

This module holds what both targets share: the tag name, reading a referrers index, the descriptor
a referrer is listed with, and adding one to an index. The HTTP lives in the registry client.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from orascp.descriptor import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Descriptor,
    is_manifest,
    load_json,
)
from orascp.errors import InvalidContentError, UsageError, quote

__all__ = [
    "MODES",
    "Mode",
    "add_referrer",
    "parse_mode",
    "parse_referrers_index",
    "referrer_descriptor",
    "subject_of",
    "tag_schema_tag",
]

Mode = Literal["v1.1-referrers-api", "v1.1-referrers-tag"]
MODES: tuple[Mode, ...] = ("v1.1-referrers-api", "v1.1-referrers-tag")


def parse_mode(value: str, flag: str) -> Mode:
    """Return a ``--*-distribution-spec`` value, or raise a usage error naming the choices."""
    for mode in MODES:
        if value == mode:
            return mode
    raise UsageError(f"{flag} must be one of {', '.join(MODES)}, got {quote(value)}")


def tag_schema_tag(digest: str) -> str:
    """Return the referrers tag of ``digest``: ``<alg>-<hex>``, cut to fit a tag."""
    algorithm, _, encoded = digest.partition(":")
    # distribution-spec: the algorithm is cut to 32 characters and the hex to 64.
    return f"{algorithm[:32]}-{encoded[:64]}"


def _object(content: bytes) -> dict[str, Any] | None:
    try:
        obj = load_json(content)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def subject_of(media_type: str, content: bytes) -> Descriptor | None:
    """Return the ``subject`` of a manifest, or None (Docker types have none)."""
    if not is_manifest(media_type) or media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST):
        return None
    obj = _object(content)
    if obj is None or obj.get("subject") is None:
        return None
    try:
        return Descriptor.from_json(obj["subject"])
    except InvalidContentError:
        return None


def referrer_descriptor(desc: Descriptor, content: bytes) -> Descriptor:
    """Return how a referrer is listed: with its artifact type and its annotations.

    The artifact type is the manifest's ``artifactType``, else its config's media type, as the
    Referrers API reports it.
    """
    obj = _object(content) or {}
    artifact_type = obj.get("artifactType")
    if not isinstance(artifact_type, str):
        config = obj.get("config")
        artifact_type = config.get("mediaType") if isinstance(config, dict) else None
    annotations = obj.get("annotations")
    if not (
        isinstance(annotations, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        annotations = None
    return Descriptor(
        desc.media_type,
        desc.digest,
        desc.size,
        annotations=annotations or None,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
    )


def parse_referrers_index(content: bytes, subject: str) -> list[Descriptor]:
    """Return the manifests a referrers index lists, without the subject itself.

    A registry that resolves the tag ``sha256-<hex>`` to the manifest ``sha256:<hex>`` would
    otherwise make the subject's own children look like its referrers.
    """
    obj = _object(content)
    if obj is None or not isinstance(obj.get("manifests", []), list):
        raise InvalidContentError("the referrers list is not an image index")
    found: list[Descriptor] = []
    for item in obj.get("manifests") or []:
        desc = Descriptor.from_json(item)
        if desc.digest != subject and is_manifest(desc.media_type):
            found.append(desc)
    return found


def add_referrer(index: bytes | None, referrer: Descriptor) -> bytes | None:
    """Return ``index`` with ``referrer`` added, a new index if None, or None if it is listed."""
    obj = _object(index) if index is not None else None
    if obj is None or not isinstance(obj.get("manifests"), list):
        obj = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    manifests: list[Any] = obj["manifests"]
    if any(isinstance(m, dict) and m.get("digest") == referrer.digest for m in manifests):
        return None
    manifests.append(referrer.to_json())
    return json.dumps(obj, separators=(",", ":")).encode()
