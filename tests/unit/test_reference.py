"""Parse registry and OCI-layout references: every valid form, and every invalid one named."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from orascp.errors import InvalidReferenceError
from orascp.reference import (
    RegistryReference,
    is_loopback_host,
    parse_layout_reference,
    parse_registry_reference,
    split_tags,
    validate_tag,
)

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8


@pytest.mark.parametrize(
    ("raw", "registry", "repository", "tag", "digest"),
    [
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
        ("localhost/app:v1", "localhost", "app", "v1", None),
        ("localhost:5000/app", "localhost:5000", "app", None, None),
        ("registry.example.com/team/app:1.0", "registry.example.com", "team/app", "1.0", None),
        ("r.io/a/b/c/d:t", "r.io", "a/b/c/d", "t", None),
        ("r.io/a.b:t", "r.io", "a.b", "t", None),
        ("r.io/a_b:t", "r.io", "a_b", "t", None),
        ("r.io/a__b:t", "r.io", "a__b", "t", None),
        ("r.io/a-b:t", "r.io", "a-b", "t", None),
        ("r.io/a---b:t", "r.io", "a---b", "t", None),
        ("r.io/0app9:t", "r.io", "0app9", "t", None),
        ("r.io/app:_t", "r.io", "app", "_t", None),
        ("r.io/app:V1.2-rc_3", "r.io", "app", "V1.2-rc_3", None),
        ("r.io/app:" + "a" * 128, "r.io", "app", "a" * 128, None),
        (f"r.io/app@{SHA256}", "r.io", "app", None, SHA256),
        (f"r.io/app@{SHA512}", "r.io", "app", None, SHA512),
        (f"r.io/app:v1@{SHA256}", "r.io", "app", "v1", SHA256),
        ("[::1]:5000/r", "[::1]:5000", "r", None, None),
        ("[::1]/r:v1", "[::1]", "r", "v1", None),
        ("[2001:db8::1]:443/a/b:c", "[2001:db8::1]:443", "a/b", "c", None),
        ("127.0.0.1:5000/r:v1", "127.0.0.1:5000", "r", "v1", None),
        ("localhost:1/r:v", "localhost:1", "r", "v", None),
        ("localhost:65535/r:v", "localhost:65535", "r", "v", None),
        ("my-host.example:8080/r:v", "my-host.example:8080", "r", "v", None),
    ],
)
def test_valid_registry_references(
    raw: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_registry_reference(raw)
    assert ref == RegistryReference(registry, repository, tag, digest)
    assert str(ref) == raw


def test_tag_and_digest_uses_the_digest_as_reference() -> None:
    ref = parse_registry_reference(f"r.io/app:v1@{SHA256}")
    assert ref.reference == SHA256
    assert ref.tag == "v1"


def test_reference_is_the_tag_without_digest() -> None:
    assert parse_registry_reference("r.io/app:v1").reference == "v1"
    assert parse_registry_reference("r.io/app").reference is None


def test_hostname_strips_the_port_and_keeps_ipv6_brackets() -> None:
    assert parse_registry_reference("localhost:5000/app:v1").hostname == "localhost"
    assert parse_registry_reference("[::1]:5000/app:v1").hostname == "[::1]"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "empty"),
        ("localhost:5000", "missing repository"),
        ("localhost:5000/", "missing repository"),
        ("localhost:5000/:v1", "missing repository"),
        (f"localhost:5000/@{SHA256}", "missing repository"),
        ("localhost:5000/App:v1", "lowercase"),
        ("localhost:5000/team/MyApp:v1", "lowercase"),
        ("localhost:5000/app!:v1", '"app!"'),
        ("localhost:5000/-app:v1", '"-app"'),
        ("localhost:5000/app-:v1", '"app-"'),
        ("localhost:5000/a..b:v1", '"a..b"'),
        ("localhost:5000/a___b:v1", '"a___b"'),
        ("localhost:5000/a//b:v1", '"a//b"'),
        ("localhost:5000/app/:v1", '"app/"'),
        ("localhost:5000/app:v 1", "white space"),
        ("localhost:5000/app:", "tag is empty"),
        ("localhost:5000/app:.v1", '".v1"'),
        ("localhost:5000/app:-v1", '"-v1"'),
        ("localhost:5000/app:v+1", '"v+1"'),
        ("localhost:5000/app:" + "a" * 129, "129 characters"),
        ("localhost:5000/app@sha256:" + "A" * 64, "invalid digest"),
        ("localhost:5000/app@sha256:" + "0" * 63, "invalid digest"),
        ("localhost:5000/app@sha256:" + "0" * 65, "invalid digest"),
        ("localhost:5000/app@md5:" + "0" * 32, "invalid digest"),
        ("localhost:5000/app@sha512:" + "0" * 64, "invalid digest"),
        ("localhost:5000/app@sha256", "invalid digest"),
        ("localhost:5000/app@", "invalid digest"),
        ("localhost:5000/app@" + "0" * 64, "invalid digest"),
        ("::1/r", "needs brackets"),
        ("::1:5000/r:v1", "needs brackets"),
        ("[::1/r", "unclosed"),
        ("[fe80::1%eth0]:5000/r", "zone"),
        ("[fe80::1%25eth0]/r", "zone"),
        ("[not-an-ip]:5000/r", "not a valid IPv6"),
        ("[::1]x/r", '"[::1]x"'),
        ("localhost:0/r", 'invalid port "0"'),
        ("localhost:65536/r", 'invalid port "65536"'),
        ("localhost:abc/r", 'invalid port "abc"'),
        ("localhost:/r", 'invalid port ""'),
        ("localhost:-1/r", 'invalid port "-1"'),
        # Unicode digits are digits to str.isdigit(), but not to a URL.
        ("localhost:\uff15\uff10\uff10\uff10/r", "invalid port"),
        ("local_host/r", '"local_host"'),
        ("-bad.example/r", '"-bad.example"'),
        ("bad-.example/r", '"bad-.example"'),
        ("a..b/r", '"a..b"'),
        ("localhost/" + "a" * 250, "255"),
    ],
)
def test_invalid_registry_references(raw: str, needle: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_registry_reference(raw)
    assert needle in str(info.value)
    assert str(info.value).startswith("invalid reference")


def test_name_of_exactly_255_characters_is_accepted() -> None:
    host = "localhost"
    repo = "a" * (255 - len(host) - 1)
    ref = parse_registry_reference(f"{host}/{repo}:v1")
    assert len(f"{ref.registry}/{ref.repository}") == 255
    with pytest.raises(InvalidReferenceError, match="255"):
        parse_registry_reference(f"{host}/{repo}a:v1")


def test_tag_length_limit_message() -> None:
    assert validate_tag("a" * 128) == "a" * 128
    with pytest.raises(InvalidReferenceError, match="limit is 128"):
        validate_tag("a" * 129)


def test_with_reference() -> None:
    ref = parse_registry_reference("r.io/app:v1")
    assert ref.with_reference(SHA256) == RegistryReference("r.io", "app", digest=SHA256)
    assert ref.with_reference("v2") == RegistryReference("r.io", "app", tag="v2")
    assert ref.with_reference(None) == RegistryReference("r.io", "app")


# -- OCI layouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path", "tag", "digest"),
    [
        ("out", "out", None, None),
        ("./out:v1", "./out", "v1", None),
        (f"./out@{SHA256}", "./out", None, SHA256),
        (f"/abs/dir@{SHA512}", "/abs/dir", None, SHA512),
        ("./dir:with/colon", "./dir:with/colon", None, None),
        ("./dir:with/colon:v2", "./dir:with/colon", "v2", None),
        ("a:b:c", "a:b", "c", None),
        (f"a:b@{SHA256}", "a:b", None, SHA256),
        ("./x:" + "t" * 128, "./x", "t" * 128, None),
    ],
)
def test_valid_layout_references(raw: str, path: str, tag: str | None, digest: str | None) -> None:
    ref = parse_layout_reference(raw)
    assert (ref.path, ref.tag, ref.digest) == (path, tag, digest)
    assert ref.reference == (digest or tag)
    assert str(ref) == raw


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (":v1", "path is empty"),
        (f"@{SHA256}", "path is empty"),
        ("", "path is empty"),
        ("./out:-v1", '"-v1"'),
        ("./out:v 1", '"v 1"'),
        ("./out:", "tag is empty"),
        ("./out:" + "t" * 129, "129 characters"),
        ("./out@sha256:abc", "invalid digest"),
        ("./out@latest", "invalid digest"),
        ("./out@sha256:" + "F" * 64, "invalid digest"),
        # `$` in a Python regex also matches before a final newline: "v1\n" is not a tag.
        ("./out:v1\n", "tag"),
        (f"./out@{SHA256}\n", "invalid digest"),
    ],
)
def test_invalid_layout_references(raw: str, needle: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_layout_reference(raw)
    assert needle in str(info.value)
    assert "OCI layout reference" in str(info.value)


# -- extra tags -------------------------------------------------------------------------------


def test_split_tags() -> None:
    assert split_tags("r:a,b,c") == ("r:a", ("b", "c"))
    assert split_tags("r:a") == ("r:a", ())
    assert split_tags("localhost:5000/app:v1,latest") == ("localhost:5000/app:v1", ("latest",))


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("r:a,,b", "extra tag is empty"),
        ("r:a,b,", "extra tag is empty"),
        ("r:a,-b", '"-b"'),
        ("r:a," + "x" * 129, "129 characters"),
        ("r:a,b\n", "extra tag"),
    ],
)
def test_split_tags_refuses_bad_extra_tags(raw: str, needle: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        split_tags(raw)
    assert needle in str(info.value)


# -- loopback ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("registry.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("::1", True),
        ("example.com", False),
        ("localhost.example.com", False),
        ("mylocalhost", False),
        ("10.0.0.1", False),
        ("[2001:db8::1]", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# -- round trip -------------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_hostname = st.lists(_label, min_size=1, max_size=3).map(".".join)
_ipv6 = st.ip_addresses(v=6).map(lambda ip: f"[{ip}]")
_host = st.tuples(
    st.one_of(_hostname, _ipv6, st.just("localhost")),
    st.none() | st.integers(min_value=1, max_value=65535),
).map(lambda hp: hp[0] if hp[1] is None else f"{hp[0]}:{hp[1]}")
_component = st.from_regex(r"[a-z0-9]{1,5}(([._]|__|-+)[a-z0-9]{1,5}){0,3}", fullmatch=True)
_repository = st.lists(_component, min_size=1, max_size=4).map("/".join)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
_digest = st.one_of(
    st.from_regex(r"[a-f0-9]{64}", fullmatch=True).map(lambda h: f"sha256:{h}"),
    st.from_regex(r"[a-f0-9]{128}", fullmatch=True).map(lambda h: f"sha512:{h}"),
)


@settings(database=None, deadline=None)
@given(host=_host, repository=_repository, tag=st.none() | _tag, digest=st.none() | _digest)
def test_round_trip(host: str, repository: str, tag: str | None, digest: str | None) -> None:
    assume(len(host) + 1 + len(repository) <= 255)
    ref = RegistryReference(host, repository, tag, digest)
    parsed = parse_registry_reference(str(ref))
    assert parsed == ref
    assert str(parsed) == str(ref)
    assert parsed.reference == (digest or tag)
