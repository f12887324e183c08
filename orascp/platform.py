"""Parse ``--platform`` values and pick the matching manifests of an index.

Specs: image-spec v1.1 ``image-index.md`` (the ``platform`` object of an index entry) and
``config.md`` (``os``, ``architecture``, ``variant``, ``os.version``). Matching follows
containerd's ``platforms`` package, which oras and docker use: names are normalised (``x86_64`` is
``amd64``, ``arm64`` is ``arm64/v8``) before they are compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orascp.descriptor import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Descriptor,
    load_json,
    parse_manifest,
)
from orascp.errors import InvalidContentError, NotFoundError, UsageError, quote

__all__ = [
    "Platform",
    "config_platform",
    "matches",
    "parse_platform",
    "platform_from_json",
    "select",
]

_INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
# One component of os/arch[/variant][:os_version]; no "/" or ":" so the split is unambiguous and
# __str__ round-trips, no spaces or control characters so a value prints as typed.
_PART_RE = re.compile(r"[A-Za-z0-9._-]+")
_EXPECTED = "expected os/arch[/variant][:os_version], e.g. linux/amd64"


@dataclass(frozen=True, slots=True)
class Platform:
    """Name an operating system and CPU, as an index entry's ``platform`` object does.

    Values are kept as written; :func:`matches` normalises them when comparing.
    """

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    def __str__(self) -> str:
        """Return the platform in the form :func:`parse_platform` reads, e.g. ``linux/arm64/v8``."""
        text = f"{self.os}/{self.architecture}"
        if self.variant:
            text += f"/{self.variant}"
        if self.os_version:
            text += f":{self.os_version}"
        return text


def parse_platform(text: str) -> Platform:
    """Parse ``os/arch[/variant][:os_version]`` (the ``--platform`` flag, as ``oras cp`` reads it).

    Raise :class:`UsageError` naming the value and the expected form when it does not parse.
    """
    spec, colon, os_version = text.partition(":")
    parts = spec.split("/")
    if (
        not 2 <= len(parts) <= 3
        or not all(_PART_RE.fullmatch(part) for part in parts)
        # A colon promises a version: "linux/amd64:" is a typo, not "any version".
        or (colon and not _PART_RE.fullmatch(os_version))
    ):
        raise UsageError(f"invalid platform {quote(text)}: {_EXPECTED}")
    return Platform(
        os=parts[0],
        architecture=parts[1],
        variant=parts[2] if len(parts) == 3 else None,
        os_version=os_version if colon else None,
    )


def platform_from_json(obj: object) -> Platform | None:
    """Build a platform from an index entry's ``platform`` object or an image config object.

    Return None when ``os`` or ``architecture`` is missing, empty or not a string: such content
    has no platform to match. A malformed ``variant`` or ``os.version`` is ignored likewise.
    """
    if not isinstance(obj, Mapping):
        return None
    os_name = obj.get("os")
    architecture = obj.get("architecture")
    if not isinstance(os_name, str) or not os_name:
        return None
    if not isinstance(architecture, str) or not architecture:
        return None
    return Platform(
        os=os_name,
        architecture=architecture,
        variant=_optional_str(obj.get("variant")),
        os_version=_optional_str(obj.get("os.version")),
    )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _normalize(platform: Platform) -> tuple[str, str, str]:
    """Return (os, architecture, variant) spelled the way containerd's ``Normalize`` does."""
    os_name = platform.os.lower()
    if os_name == "macos":
        os_name = "darwin"
    arch = platform.architecture.lower()
    variant = (platform.variant or "").lower()
    if arch == "i386":
        arch, variant = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        # v1 is the baseline every amd64 CPU meets, so it names the same thing as no variant.
        if variant == "v1":
            variant = ""
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        # Every arm64 CPU is at least ARMv8; registries list it both with and without "v8".
        if variant in ("", "8", "v8", "v8.0"):
            variant = "v8"
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm":
        # 32-bit arm without a variant means v7, the hard-float default of docker and containerd.
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = f"v{variant}"
    return os_name, arch, variant


def matches(wanted: Platform, got: Platform) -> bool:
    """Tell whether ``got`` (an index entry's platform) is the ``wanted`` one.

    Both sides are normalised first, so ``linux/arm64`` matches ``linux/aarch64/v8`` but
    ``linux/arm`` matches only ``arm/v7`` (or ``arm`` without a variant). A wanted variant is
    never a wildcard. A wanted ``os_version`` must equal the entry's; None accepts any.
    """
    if _normalize(wanted) != _normalize(got):
        return False
    return wanted.os_version is None or wanted.os_version == got.os_version


def _index_entries(index_content: bytes, media_type: str) -> list[Descriptor]:
    obj = parse_manifest(media_type, index_content)
    entries = obj.get("manifests")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidContentError(f"manifest of type {media_type} has a malformed manifests list")
    return [Descriptor.from_json(entry) for entry in entries]


def select(index_content: bytes, media_type: str, wanted: Sequence[Platform]) -> list[Descriptor]:
    """Return the manifests of an index that match any of the ``wanted`` platforms.

    For each wanted platform the first matching entry is taken, as containerd and oras do; the
    result keeps index order and lists an entry once. Entries without a platform never match.
    Raise :class:`NotFoundError` listing the index's platforms when a wanted one matches nothing,
    and ValueError when ``media_type`` is not an index type (the caller's mistake).
    """
    if media_type not in _INDEX_TYPES:
        raise ValueError(f"select() needs an index or manifest list, not {media_type}")
    entries = _index_entries(index_content, media_type)
    platforms = [platform_from_json(entry.platform) for entry in entries]
    chosen: set[int] = set()
    missing: list[Platform] = []
    for want in wanted:
        found = next(
            (i for i, got in enumerate(platforms) if got is not None and matches(want, got)),
            None,
        )
        if found is None:
            missing.append(want)
        else:
            chosen.add(found)
    if missing:
        raise NotFoundError(_missing_message(missing, platforms), hint=_MISSING_HINT)
    return [entries[i] for i in sorted(chosen)]


_MISSING_HINT = "pick a platform the index lists, or leave out --platform to copy them all"


def _missing_message(missing: Sequence[Platform], available: Sequence[Platform | None]) -> str:
    names = list(dict.fromkeys(str(p) for p in missing))
    noun = "platform" if len(names) == 1 else "platforms"
    # dict.fromkeys keeps index order and drops repeats (an index may list a platform twice).
    have = list(dict.fromkeys(str(p) for p in available if p is not None))
    listed = f"it has {', '.join(have)}" if have else "none of its entries names a platform"
    return f"no manifest for {noun} {', '.join(names)} in the index ({listed})"


def config_platform(config_content: bytes) -> Platform | None:
    """Read the platform of an image config blob (``os``, ``architecture``, ...).

    Return None when the config names no platform; raise :class:`InvalidContentError` when it is
    not JSON at all.
    """
    try:
        obj = load_json(config_content)
    except ValueError as exc:
        raise InvalidContentError(f"image config is not valid JSON: {exc}") from None
    return platform_from_json(obj)
