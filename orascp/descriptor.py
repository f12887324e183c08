"""Describe content: descriptors, digests, media types and the successors of a manifest.

Specs: image-spec v1.1 ``descriptor.md`` (digest grammar, ``size``), ``manifest.md``,
``image-index.md`` (``subject``, ``manifests``), and Docker's image manifest v2 schema 2.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orascp.errors import InvalidContentError, quote

__all__ = [
    "ALGORITHMS",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_MEDIA_TYPES",
    "OCI_ARTIFACT_MANIFEST",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "TITLE_ANNOTATION",
    "Descriptor",
    "compute_digest",
    "descriptor_for",
    "is_manifest",
    "load_json",
    "parse_manifest",
    "successors",
    "validate_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

# Order matters only for readability of the Accept header; registries pick by their own rules.
MANIFEST_MEDIA_TYPES = (
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_ARTIFACT_MANIFEST,
)
_INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

TITLE_ANNOTATION = "org.opencontainers.image.title"

# Layers that must not be copied: their bytes live elsewhere (``urls``) by design.
_FOREIGN_LAYER_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)

# Only algorithms we can verify; an unknown one is refused, never mapped to sha256.
ALGORITHMS: Mapping[str, int] = {"sha256": 64, "sha512": 128}
# Larger than any real blob (8 TiB), small enough that no arithmetic on it misbehaves.
MAX_SIZE = 2**43
_DIGEST_RE = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")
_MEDIA_TYPE_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)


def validate_digest(digest: str) -> str:
    """Return ``digest`` unchanged if it is a supported, well-formed digest; raise otherwise.

    Every digest is checked here before it is used to build a URL or a file path.
    """
    m = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if m is None or len(m.group(2)) != ALGORITHMS[m.group(1)]:
        raise InvalidContentError(
            f"invalid digest {quote(digest)}: expected sha256:<64 hex> or sha512:<128 hex>,"
            " in lowercase"
        )
    return digest


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """Return the digest of ``data`` as ``<algorithm>:<hex>``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def is_manifest(media_type: str) -> bool:
    """Tell whether content of this media type is a manifest the engine walks."""
    return media_type in MANIFEST_MEDIA_TYPES


@dataclass(frozen=True, slots=True)
class Descriptor:
    """Point at content by media type, digest and size.

    Two descriptors are equal when their media type, digest and size are; the optional fields ride
    along for display (title), layouts (``ref.name``) and platform selection.
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = field(default=None, compare=False)
    artifact_type: str | None = field(default=None, compare=False)
    platform: Mapping[str, Any] | None = field(default=None, compare=False)
    urls: Sequence[str] | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, obj: object) -> Descriptor:
        """Build a descriptor from its JSON object, validating digest, size and media type."""
        if not isinstance(obj, dict):
            raise InvalidContentError("descriptor is not a JSON object")
        media_type = obj.get("mediaType")
        digest = obj.get("digest")
        size = obj.get("size")
        if not isinstance(media_type, str) or not _MEDIA_TYPE_RE.fullmatch(media_type):
            raise InvalidContentError(f"descriptor has an invalid mediaType {quote(media_type)}")
        if not isinstance(digest, str):
            raise InvalidContentError("descriptor has no digest")
        validate_digest(digest)
        # bool is an int in Python; a size of `true` is still malformed.
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
            raise InvalidContentError(f"descriptor {digest} has an invalid size {quote(size)}")
        annotations = obj.get("annotations")
        if annotations is not None and not (
            isinstance(annotations, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
        ):
            raise InvalidContentError(f"descriptor {digest} has malformed annotations")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise InvalidContentError(f"descriptor {digest} has a malformed artifactType")
        platform = obj.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise InvalidContentError(f"descriptor {digest} has a malformed platform")
        urls = obj.get("urls")
        if urls is not None and not (
            isinstance(urls, list) and all(isinstance(u, str) for u in urls)
        ):
            raise InvalidContentError(f"descriptor {digest} has malformed urls")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=annotations,
            artifact_type=artifact_type,
            platform=platform,
            urls=tuple(urls) if urls is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the descriptor as the JSON object the image spec defines."""
        obj: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            obj["artifactType"] = self.artifact_type
        if self.platform:
            obj["platform"] = dict(self.platform)
        if self.urls:
            obj["urls"] = list(self.urls)
        if self.annotations:
            obj["annotations"] = dict(self.annotations)
        return obj

    @property
    def algorithm(self) -> str:
        """Return the digest algorithm, e.g. ``sha256``."""
        return self.digest.split(":", 1)[0]

    @property
    def hex(self) -> str:
        """Return the encoded part of the digest."""
        return self.digest.split(":", 1)[1]

    @property
    def title(self) -> str | None:
        """Return the ``org.opencontainers.image.title`` annotation, if any."""
        return self.annotations.get(TITLE_ANNOTATION) if self.annotations else None

    def with_annotations(self, annotations: Mapping[str, str] | None) -> Descriptor:
        """Return a copy of this descriptor with other annotations."""
        return Descriptor(
            self.media_type,
            self.digest,
            self.size,
            annotations=annotations,
            artifact_type=self.artifact_type,
            platform=self.platform,
            urls=self.urls,
        )


def descriptor_for(media_type: str, content: bytes) -> Descriptor:
    """Return the sha256 descriptor of ``content``."""
    return Descriptor(media_type, compute_digest(content), len(content))


def load_json(raw: bytes | str) -> Any:
    """Decode JSON; hostile nesting (a RecursionError in the decoder) is a ValueError too."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_manifest(media_type: str, content: bytes) -> dict[str, Any]:
    """Decode a manifest and check that its ``mediaType`` field agrees with ``media_type``.

    The bytes themselves are never re-serialised: a digest covers the exact bytes.
    """
    try:
        obj = load_json(content)
    except ValueError as exc:
        raise InvalidContentError(
            f"manifest of type {media_type} is not valid JSON: {exc}"
        ) from None
    if not isinstance(obj, dict):
        raise InvalidContentError(f"manifest of type {media_type} is not a JSON object")
    declared = obj.get("mediaType")
    if declared is not None and declared != media_type:
        raise InvalidContentError(
            f"manifest declares mediaType {quote(declared)} but was served as {quote(media_type)}"
        )
    return obj


def _descriptor_list(obj: dict[str, Any], key: str, media_type: str) -> list[Descriptor]:
    value = obj.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidContentError(
            f"manifest of type {media_type} has a malformed {quote(key)} list"
        )
    return [Descriptor.from_json(item) for item in value]


def successors(desc: Descriptor, content: bytes) -> list[Descriptor]:
    """Return the content a manifest points at, in push order, without foreign layers.

    ``subject`` comes first, as in oras-go: copying a referrer also copies what it refers to.
    Content of an unknown media type has no successors and is copied as an opaque blob.
    """
    media_type = desc.media_type
    if not is_manifest(media_type):
        return []
    obj = parse_manifest(media_type, content)
    out: list[Descriptor] = []
    subject = obj.get("subject")
    if subject is not None and media_type != DOCKER_MANIFEST and media_type != DOCKER_MANIFEST_LIST:
        out.append(Descriptor.from_json(subject))
    if media_type in _INDEX_TYPES:
        out.extend(_descriptor_list(obj, "manifests", media_type))
    elif media_type == OCI_ARTIFACT_MANIFEST:
        out.extend(_descriptor_list(obj, "blobs", media_type))
    else:
        if "config" not in obj:
            raise InvalidContentError(f"manifest of type {media_type} has no config")
        out.append(Descriptor.from_json(obj["config"]))
        out.extend(
            d
            for d in _descriptor_list(obj, "layers", media_type)
            if d.media_type not in _FOREIGN_LAYER_TYPES
        )
    return out
