"""Parse --platform values, match them as containerd does, and pick manifests from an index."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orascp.descriptor import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    compute_digest,
)
from orascp.errors import InvalidContentError, NotFoundError, UsageError
from orascp.platform import (
    Platform,
    config_platform,
    matches,
    parse_platform,
    platform_from_json,
    select,
)

P = Platform

# -- parse_platform ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", P("linux", "amd64")),
        ("linux/arm64/v8", P("linux", "arm64", "v8")),
        ("linux/arm/v7", P("linux", "arm", "v7")),
        ("windows/amd64:10.0.17763.1234", P("windows", "amd64", None, "10.0.17763.1234")),
        ("windows/arm64/v8:10.0.26100", P("windows", "arm64", "v8", "10.0.26100")),
        ("Linux/X86_64", P("Linux", "X86_64")),  # kept as written; matches() normalises
        ("linux/x86-64", P("linux", "x86-64")),
        ("linux/ppc64le", P("linux", "ppc64le")),
        ("unknown/unknown", P("unknown", "unknown")),
    ],
)
def test_parse_platform_valid(text: str, expected: Platform) -> None:
    assert parse_platform(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "linux",
        "/",
        "linux/",
        "/amd64",
        "linux//v8",
        "linux/arm64/",
        "linux/arm64/v8/extra",
        "linux/amd64:",
        ":10.0",
        "windows/amd64:10.0:1",
        "windows/amd64:10 0",
        "linux/amd 64",
        " linux/amd64",
        "linux/amd64\n",
        "linux/amd64;rm",
        "linux/amd64@sha256",
        "linux\\amd64",
        "linux/ärm64",
    ],
)
def test_parse_platform_refuses(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_platform(text)
    message = str(info.value)
    assert message.startswith("invalid platform ")
    assert message.endswith(": expected os/arch[/variant][:os_version], e.g. linux/amd64")
    assert "\n" not in message


def test_parse_platform_message_names_the_value() -> None:
    with pytest.raises(UsageError) as info:
        parse_platform("linux")
    assert str(info.value) == (
        'invalid platform "linux": expected os/arch[/variant][:os_version], e.g. linux/amd64'
    )


@pytest.mark.parametrize(
    ("platform", "text"),
    [
        (P("linux", "amd64"), "linux/amd64"),
        (P("linux", "arm64", "v8"), "linux/arm64/v8"),
        (P("windows", "amd64", None, "10.0.17763.1234"), "windows/amd64:10.0.17763.1234"),
        (P("windows", "arm64", "v8", "10.0.26100"), "windows/arm64/v8:10.0.26100"),
    ],
)
def test_str_round_trips(platform: Platform, text: str) -> None:
    assert str(platform) == text
    assert parse_platform(text) == platform
    assert parse_platform(str(platform)) == platform


# -- platform_from_json -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"os": "linux", "architecture": "amd64"}, P("linux", "amd64")),
        (
            {"os": "linux", "architecture": "arm", "variant": "v6"},
            P("linux", "arm", "v6"),
        ),
        (
            {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2340"},
            P("windows", "amd64", None, "10.0.20348.2340"),
        ),
        (
            {"os": "linux", "architecture": "arm64", "variant": "", "os.features": ["x"]},
            P("linux", "arm64"),
        ),
        ({"os": "linux", "architecture": "amd64", "variant": 7}, P("linux", "amd64")),
        ({"os": "linux", "architecture": "amd64", "os.version": None}, P("linux", "amd64")),
        ({"os": "linux"}, None),
        ({"architecture": "amd64"}, None),
        ({"os": "", "architecture": "amd64"}, None),
        ({"os": "linux", "architecture": 64}, None),
        ({"os": None, "architecture": "amd64"}, None),
        ({}, None),
        (None, None),
        ([], None),
        ("linux/amd64", None),
    ],
)
def test_platform_from_json(obj: object, expected: Platform | None) -> None:
    assert platform_from_json(obj) == expected


# -- matches ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "got"),
    [
        ("linux/amd64", P("linux", "amd64")),
        ("linux/amd64", P("linux", "x86_64")),
        ("linux/amd64", P("linux", "x86-64")),
        ("linux/x86_64", P("linux", "amd64")),
        ("linux/amd64", P("linux", "amd64", "v1")),
        ("linux/386", P("linux", "i386")),
        ("linux/i386", P("linux", "386")),
        ("linux/arm64", P("linux", "arm64", "v8")),
        ("linux/arm64", P("linux", "arm64")),
        ("linux/arm64", P("linux", "aarch64")),
        ("linux/arm64/v8", P("linux", "arm64")),
        ("linux/arm64/8", P("linux", "arm64", "v8")),
        ("linux/aarch64/v8", P("linux", "arm64")),
        ("linux/arm", P("linux", "arm", "v7")),
        ("linux/arm", P("linux", "arm")),
        ("linux/arm/v7", P("linux", "arm")),
        ("linux/arm/7", P("linux", "arm", "v7")),
        ("linux/arm/v7", P("linux", "armhf")),
        ("linux/armhf", P("linux", "arm", "v7")),
        ("linux/arm/v6", P("linux", "armel")),
        ("linux/armel", P("linux", "arm", "v6")),
        ("linux/arm/v6", P("linux", "arm", "6")),
        ("Linux/AMD64", P("linux", "amd64")),
        ("linux/amd64", P("LINUX", "amd64")),
        ("linux/arm/V7", P("linux", "arm", "v7")),
        ("windows/amd64", P("windows", "amd64", None, "10.0.17763.1234")),
        ("windows/amd64:10.0.17763.1234", P("windows", "amd64", None, "10.0.17763.1234")),
        ("linux/s390x", P("linux", "s390x")),
    ],
)
def test_matches(wanted: str, got: Platform) -> None:
    assert matches(parse_platform(wanted), got)


@pytest.mark.parametrize(
    ("wanted", "got"),
    [
        ("linux/amd64", P("windows", "amd64")),
        ("linux/amd64", P("linux", "arm64")),
        ("linux/amd64", P("linux", "386")),
        ("linux/amd64", P("linux", "amd64", "v2")),
        ("linux/amd64/v3", P("linux", "amd64")),
        ("linux/arm64", P("linux", "arm64", "v9")),
        ("linux/arm64/v9", P("linux", "arm64")),
        ("linux/arm64", P("linux", "arm", "v8")),
        ("linux/arm", P("linux", "arm", "v6")),
        ("linux/arm", P("linux", "arm", "v5")),
        ("linux/arm", P("linux", "armel")),
        ("linux/arm", P("linux", "arm64")),
        ("linux/arm/v6", P("linux", "arm")),
        ("linux/arm/v6", P("linux", "arm", "v7")),
        ("linux/arm/v7", P("linux", "arm", "v6")),
        ("linux/ppc64le", P("linux", "ppc64le", "power9")),
        ("windows/amd64:10.0.17763.1234", P("windows", "amd64")),
        ("windows/amd64:10.0.17763.1234", P("windows", "amd64", None, "10.0.20348.2340")),
        ("linux/s390x", P("linux", "s390")),
    ],
)
def test_does_not_match(wanted: str, got: Platform) -> None:
    assert not matches(parse_platform(wanted), got)


# -- select -----------------------------------------------------------------------------------


def _entry(
    seed: str, platform: dict[str, Any] | None, media_type: str = OCI_MANIFEST
) -> dict[str, Any]:
    data = seed.encode()
    obj: dict[str, Any] = {
        "mediaType": media_type,
        "digest": compute_digest(data),
        "size": len(data),
    }
    if platform is not None:
        obj["platform"] = platform
    return obj


def _plat(os_name: str, arch: str, variant: str | None = None) -> dict[str, Any]:
    obj = {"os": os_name, "architecture": arch}
    if variant is not None:
        obj["variant"] = variant
    return obj


def _index(entries: list[dict[str, Any]], media_type: str = OCI_INDEX) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()


AMD64 = _entry("amd64", _plat("linux", "amd64"))
ARM64 = _entry("arm64", _plat("linux", "arm64", "v8"))
ARMV7 = _entry("armv7", _plat("linux", "arm", "v7"))
ARMV6 = _entry("armv6", _plat("linux", "arm", "v6"))
ATTEST = _entry("attestation", _plat("unknown", "unknown"))
NO_PLATFORM = _entry("noplatform", None)
ALL = [AMD64, ARM64, ARMV7, ARMV6, ATTEST, NO_PLATFORM]


def _digests(result: list[Any]) -> list[str]:
    return [d.digest for d in result]


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (["linux/amd64"], [AMD64]),
        (["linux/arm64"], [ARM64]),
        (["linux/arm"], [ARMV7]),
        (["linux/arm/v6"], [ARMV6]),
        (["linux/x86_64"], [AMD64]),
        # Index order, not the order the platforms were asked for.
        (["linux/arm/v6", "linux/amd64"], [AMD64, ARMV6]),
        (["linux/arm64", "linux/amd64", "linux/arm/v7"], [AMD64, ARM64, ARMV7]),
        # Two spellings of one platform select its entry once.
        (["linux/arm64", "linux/aarch64/v8", "linux/arm64"], [ARM64]),
        ([], []),
    ],
)
def test_select(wanted: list[str], expected: list[dict[str, Any]]) -> None:
    result = select(_index(ALL), OCI_INDEX, [parse_platform(w) for w in wanted])
    assert _digests(result) == [e["digest"] for e in expected]


def test_select_takes_the_first_matching_entry_per_platform() -> None:
    first = _entry("first", _plat("linux", "arm64"))
    second = _entry("second", _plat("linux", "arm64", "v8"))
    third = _entry("third", _plat("linux", "aarch64"))
    content = _index([AMD64, first, second, third])
    result = select(content, OCI_INDEX, [parse_platform("linux/arm64/v8")])
    assert _digests(result) == [first["digest"]]


def test_select_returns_validated_descriptors_with_platforms() -> None:
    (desc,) = select(_index(ALL), OCI_INDEX, [parse_platform("linux/arm64")])
    assert desc.media_type == OCI_MANIFEST
    assert desc.size == len(b"arm64")
    assert platform_from_json(desc.platform) == P("linux", "arm64", "v8")


def test_select_matches_os_version() -> None:
    ltsc2019 = _entry(
        "2019", {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.1"}
    )
    ltsc2022 = _entry(
        "2022", {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.1"}
    )
    content = _index([ltsc2019, ltsc2022])
    wanted = [parse_platform("windows/amd64:10.0.20348.1")]
    assert _digests(select(content, OCI_INDEX, wanted)) == [ltsc2022["digest"]]
    # Without a version the first windows/amd64 entry wins.
    assert _digests(select(content, OCI_INDEX, [parse_platform("windows/amd64")])) == [
        ltsc2019["digest"]
    ]


def test_select_from_a_docker_manifest_list() -> None:
    amd = _entry("d-amd64", _plat("linux", "amd64"), DOCKER_MANIFEST)
    arm = _entry("d-arm", _plat("linux", "arm", "v7"), DOCKER_MANIFEST)
    content = _index([amd, arm], DOCKER_MANIFEST_LIST)
    result = select(content, DOCKER_MANIFEST_LIST, [parse_platform("linux/armhf")])
    assert _digests(result) == [arm["digest"]]
    assert result[0].media_type == DOCKER_MANIFEST


def test_select_reports_a_missing_platform_with_what_the_index_has() -> None:
    content = _index([AMD64, ARM64, NO_PLATFORM, AMD64])
    with pytest.raises(NotFoundError) as info:
        select(content, OCI_INDEX, [parse_platform("linux/amd64"), parse_platform("linux/s390x")])
    assert str(info.value) == (
        "no manifest for platform linux/s390x in the index (it has linux/amd64, linux/arm64/v8)"
    )
    assert info.value.hint


def test_select_reports_every_missing_platform() -> None:
    with pytest.raises(NotFoundError) as info:
        select(
            _index([AMD64]),
            OCI_INDEX,
            [
                parse_platform("linux/s390x"),
                parse_platform("linux/amd64"),
                parse_platform("linux/ppc64le"),
            ],
        )
    assert str(info.value) == (
        "no manifest for platforms linux/s390x, linux/ppc64le in the index (it has linux/amd64)"
    )


@pytest.mark.parametrize(
    "entries",
    [
        [NO_PLATFORM],
        [_entry("bad", {"os": "linux"}), _entry("worse", {"architecture": "amd64"})],
        [],
    ],
)
def test_entries_without_a_platform_never_match(entries: list[dict[str, Any]]) -> None:
    with pytest.raises(NotFoundError, match=r"none of its entries names a platform\)$"):
        select(_index(entries), OCI_INDEX, [parse_platform("linux/amd64")])


def test_select_does_not_treat_unknown_as_a_wildcard() -> None:
    with pytest.raises(NotFoundError, match=r"\(it has unknown/unknown\)"):
        select(_index([ATTEST]), OCI_INDEX, [parse_platform("linux/amd64")])


def test_select_tolerates_an_index_without_manifests() -> None:
    content = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX}).encode()
    assert select(content, OCI_INDEX, []) == []
    with pytest.raises(NotFoundError):
        select(content, OCI_INDEX, [parse_platform("linux/amd64")])


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"mediaType": OCI_INDEX, "manifests": {}}).encode(), "malformed manifests"),
        (
            json.dumps(
                {"mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST}]}
            ).encode(),
            "no digest",
        ),
        (
            json.dumps({"mediaType": DOCKER_MANIFEST_LIST, "manifests": []}).encode(),
            "declares mediaType",
        ),
        (
            _index([{**AMD64, "platform": "linux/amd64"}]),
            "malformed platform",
        ),
    ],
)
def test_select_refuses_malformed_indexes(content: bytes, needle: str) -> None:
    with pytest.raises(InvalidContentError, match=needle):
        select(content, OCI_INDEX, [parse_platform("linux/amd64")])


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST, "application/json"])
def test_select_refuses_a_non_index_media_type(media_type: str) -> None:
    with pytest.raises(ValueError, match="index"):
        select(_index(ALL), media_type, [parse_platform("linux/amd64")])


# -- config_platform --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
            P("linux", "amd64"),
        ),
        ({"architecture": "arm", "os": "linux", "variant": "v7"}, P("linux", "arm", "v7")),
        (
            {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1234"},
            P("windows", "amd64", None, "10.0.17763.1234"),
        ),
        ({}, None),
        ({"os": "linux"}, None),
        ({"architecture": "amd64"}, None),
        ([], None),
        ("linux/amd64", None),
    ],
)
def test_config_platform(config: object, expected: Platform | None) -> None:
    assert config_platform(json.dumps(config).encode()) == expected


def test_config_platform_matches_its_index_entry() -> None:
    got = config_platform(b'{"architecture":"aarch64","os":"linux"}')
    assert got is not None
    assert matches(parse_platform("linux/arm64/v8"), got)


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe", b"[" * 100_000])
def test_config_platform_refuses_non_json(content: bytes) -> None:
    with pytest.raises(InvalidContentError, match="image config is not valid JSON"):
        config_platform(content)
