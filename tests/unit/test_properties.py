"""Properties of the parsers that read untrusted text: references, digests, challenges, JSON.

Every parser here reads something a user, a registry or a layout on disk wrote, so each one gets
two kinds of property: generated *valid* input parses to what it says (and round-trips), and
*arbitrary* input never raises anything but the one documented error type and never hangs.
"""

from __future__ import annotations

import json
import re
import signal
import string
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from orascp.descriptor import (
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    parse_manifest,
    successors,
    validate_digest,
)
from orascp.errors import InvalidContentError, InvalidReferenceError
from orascp.reference import (
    RegistryReference,
    parse_layout_reference,
    parse_registry_reference,
)
from orascp.registry.auth import Challenge, merge_scopes, parse_challenges

# Wall-clock budget of one parse; generous, a real parse takes microseconds. "No hang" is checked
# against it, per example, rather than through hypothesis's deadline (which CI noise trips).
PARSE_BUDGET = 1.0
# Past this, a parser is taken to be stuck in a loop and interrupted.
HANG_LIMIT = 10.0

PROPERTY = settings(
    max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# -- grammar strategies ------------------------------------------------------------------------

_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,12}[A-Za-z0-9])?", fullmatch=True)
_hostname = st.lists(_label, min_size=1, max_size=4).map(".".join)
_ipv4 = st.ip_addresses(v=4).map(str)


def _ipv6_text(address: Any) -> st.SearchStrategy[str]:
    """Write one IPv6 address the ways people do: compressed, exploded, upper case."""
    return st.sampled_from(
        [address.compressed, address.exploded, address.compressed.upper(), address.exploded.upper()]
    )


_ipv6 = st.ip_addresses(v=6).flatmap(_ipv6_text).map(lambda text: f"[{text}]")
_port = st.integers(min_value=1, max_value=65535).map(str)
_host = st.tuples(
    st.one_of(_hostname, _ipv4, _ipv6, st.sampled_from(["localhost", "[::1]", "127.0.0.1"])),
    st.none() | _port,
).map(lambda hp: hp[0] if hp[1] is None else f"{hp[0]}:{hp[1]}")

# distribution/reference: path-component = [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
_component = st.from_regex(r"[a-z0-9]{1,6}(([._]|__|-+)[a-z0-9]{1,6}){0,3}", fullmatch=True)
_repository = st.lists(_component, min_size=1, max_size=5).map("/".join)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
_sha256 = st.from_regex(r"[a-f0-9]{64}", fullmatch=True).map(lambda h: f"sha256:{h}")
_sha512 = st.from_regex(r"[a-f0-9]{128}", fullmatch=True).map(lambda h: f"sha512:{h}")
_digest = st.one_of(_sha256, _sha512)

_VALID_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

# Characters that steer the parsers into their interesting branches, plus a few that must never
# be accepted anywhere (white space, controls, non-ASCII digits and letters).
_REFERENCE_ALPHABET = st.sampled_from(
    [
        *"abcxyzABCZ0159:/@[]._-%,+",
        *["sha256:", "sha512:", "::", "__", "--", " ", "\t", "\n", "\x00", "\x7f", "\u00e9"],
        *["\uff15", "\u0665", "\u2028", "\u212a", "I\u0307"],
    ]
)
_reference_like = st.lists(_REFERENCE_ALPHABET, max_size=60).map("".join)
_any_text = st.one_of(st.text(max_size=300), _reference_like)


def _valid_reference_text() -> st.SearchStrategy[str]:
    return st.builds(
        lambda host, repo, tag, digest: str(RegistryReference(host, repo, tag, digest)),
        _host,
        _repository,
        st.none() | _tag,
        st.none() | _digest,
    )


@st.composite
def _mutated_reference(draw: st.DrawFn) -> str:
    """A valid reference with one character inserted, replaced or deleted: near misses."""
    text = draw(_valid_reference_text())
    i = draw(st.integers(min_value=0, max_value=len(text)))
    op = draw(st.sampled_from(["insert", "replace", "delete"]))
    char = draw(_REFERENCE_ALPHABET | st.characters())
    if op == "insert":
        return text[:i] + char + text[i:]
    if op == "replace":
        return text[:i] + char + text[i + 1 :]
    return text[:i] + text[i + 1 :]


class _Hung(BaseException):
    """Raised by SIGALRM inside a parser that runs far past its budget (an endless loop).

    A BaseException, so that no ``except Exception`` in the parser can swallow it. Python code
    (the WWW-Authenticate loop) is interrupted; a regular expression stuck in C is not, but it
    still fails the budget check once it returns.
    """


def _interrupt_hang(signum: int, frame: object) -> None:
    raise _Hung


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:80]}...({len(text)} characters)"


def _outcome(allowed: type[Exception], call: Any, *args: Any) -> tuple[Any, Exception | None]:
    """Call a parser: return (result, None), or (None, error) for an error of type ``allowed``.

    Any other exception, or a call slower than PARSE_BUDGET, fails the test with a short message
    (the inputs can be megabytes long).
    """
    start = time.monotonic()
    unexpected: Exception | None = None
    result: Any = None
    error: Exception | None = None
    previous = signal.signal(signal.SIGALRM, _interrupt_hang)
    signal.setitimer(signal.ITIMER_REAL, HANG_LIMIT)
    try:
        result = call(*args)
    except allowed as exc:
        error = exc
    except Exception as exc:
        unexpected = exc
    except _Hung:
        pytest.fail(f"{call.__name__} did not return within {HANG_LIMIT} s on {_short(args)}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if unexpected is not None:
        pytest.fail(
            f"{call.__name__}({_short(args)[1:-1]}) raised {type(unexpected).__name__}:"
            f" {_short(str(unexpected))} instead of {allowed.__name__}",
            pytrace=False,
        )
    elapsed = time.monotonic() - start
    assert elapsed < PARSE_BUDGET, f"{call.__name__} took {elapsed:.2f} s on {_short(args)}"
    if error is not None:
        # One line naming the problem: the CLI prints it after "Error:".
        assert "\n" not in str(error), str(error)
    return result, error


# -- registry references -----------------------------------------------------------------------


@PROPERTY
@given(host=_host, repository=_repository, tag=st.none() | _tag, digest=st.none() | _digest)
def test_generated_registry_references_parse_and_round_trip(
    host: str, repository: str, tag: str | None, digest: str | None
) -> None:
    assume(len(host) + 1 + len(repository) <= 255)
    raw = host + "/" + repository + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")

    ref = parse_registry_reference(raw)

    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (host, repository, tag, digest)
    assert str(ref) == raw
    assert parse_registry_reference(str(ref)) == ref
    assert ref.reference == (digest or tag)
    # The host part keeps IPv6 brackets and drops only the port.
    if host.startswith("["):
        assert ref.hostname == host[: host.index("]") + 1]
    else:
        assert ref.hostname == host.partition(":")[0]


@PROPERTY
@given(host=_host, repository=_repository)
def test_a_name_over_255_characters_is_refused(host: str, repository: str) -> None:
    padding = "a" * max(0, 256 - len(host) - 1 - len(repository))
    long_repository = f"{repository}/{padding}" if padding else repository
    assume(len(host) + 1 + len(long_repository) > 255)
    with pytest.raises(InvalidReferenceError):
        parse_registry_reference(f"{host}/{long_repository}:v1")


def _check_registry_parse(raw: str) -> None:
    ref, error = _outcome(InvalidReferenceError, parse_registry_reference, raw)
    if error is not None:
        return
    # Whatever is accepted is safe to put into a URL path and a status line.
    assert raw, "the empty reference was accepted"
    assert not any(c.isspace() or not c.isprintable() for c in raw), raw
    assert raw.isascii(), raw
    assert _REPOSITORY.fullmatch(ref.repository), ref.repository
    assert ref.repository == ref.repository.lower()
    assert ref.tag is None or _TAG.fullmatch(ref.tag)
    assert ref.digest is None or _VALID_DIGEST.fullmatch(ref.digest)
    assert len(ref.registry) + 1 + len(ref.repository) <= 255
    assert str(ref) == raw


@PROPERTY
@given(raw=st.one_of(_any_text, _mutated_reference()))
def test_arbitrary_text_is_refused_only_with_invalid_reference_error(raw: str) -> None:
    _check_registry_parse(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("localhost:" + "1" * 5000 + "/app:v1", id="port-of-5000-digits"),
        pytest.param("[::1]:" + "9" * 4301 + "/app:v1", id="ipv6-port-of-4301-digits"),
        pytest.param("r.io:" + "0" * 4400 + "80/app:v1", id="port-80-behind-4400-zeros"),
    ],
)
def test_port_of_thousands_of_digits_is_an_invalid_reference(raw: str) -> None:
    # int() refuses strings of more than 4300 digits with ValueError (CVE-2020-10735 limit).
    _check_registry_parse(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "a" * 1_000_000,
        "r.io/" + "a-" * 200_000 + "!",
        "r.io/" + "a_" * 200_000 + "!",
        "r.io/" + "a." * 200_000 + "A",
        "a." * 200_000 + "-/app",
        "a-" * 200_000 + "/app",
        "[" + ":" * 100_000 + "]/app",
        "r.io/app:" + "a" * 1_000_000,
        "r.io/app@sha256:" + "a" * 1_000_000,
    ],
    ids=lambda raw: f"{raw[:12]}...{len(raw)}",
)
def test_long_adversarial_references_are_parsed_quickly(raw: str) -> None:
    _check_registry_parse(raw)


# -- OCI layout references ---------------------------------------------------------------------


@PROPERTY
@given(raw=st.one_of(_any_text, _mutated_reference(), st.text(string.printable, max_size=80)))
def test_layout_reference_is_refused_or_has_a_non_empty_path(raw: str) -> None:
    ref, error = _outcome(InvalidReferenceError, parse_layout_reference, raw)
    if error is not None:
        return
    assert ref.path
    assert ref.tag is None or _TAG.fullmatch(ref.tag)
    assert ref.digest is None or _VALID_DIGEST.fullmatch(ref.digest)
    assert not (ref.tag and ref.digest)
    # Splitting never loses or invents a character.
    assert str(ref) == raw


_layout_path = st.text(
    st.characters(blacklist_characters="@", blacklist_categories=["Cs"]), min_size=1, max_size=40
)


@PROPERTY
@given(path=_layout_path, tag=_tag)
def test_layout_reference_with_a_tag_splits_at_the_last_colon(path: str, tag: str) -> None:
    ref = parse_layout_reference(f"{path}:{tag}")
    assert (ref.path, ref.tag, ref.digest) == (path, tag, None)


@PROPERTY
@given(path=_layout_path, digest=_digest)
def test_layout_reference_with_a_digest_splits_at_the_last_at(path: str, digest: str) -> None:
    ref = parse_layout_reference(f"{path}@{digest}")
    assert (ref.path, ref.tag, ref.digest) == (path, None, digest)


@PROPERTY
@given(path=_layout_path)
def test_layout_path_whose_last_colon_precedes_a_slash_is_all_path(path: str) -> None:
    # "C:/x", "./a:b/c": a ':' followed by a '/' belongs to the path.
    assume(":" not in path or "/" in path.rpartition(":")[2])
    ref = parse_layout_reference(path)
    assert (ref.path, ref.tag, ref.digest) == (path, None, None)


# -- digests -----------------------------------------------------------------------------------


@st.composite
def _near_digest(draw: st.DrawFn) -> str:
    """A digest-shaped string: right or wrong algorithm, length, case, alphabet, trailers."""
    algorithm = draw(
        st.sampled_from(["sha256", "sha512", "SHA256", "md5", "sha384", "", "sha256 "])
    )
    length = draw(st.sampled_from([0, 1, 32, 63, 64, 65, 96, 127, 128, 129]))
    alphabet = draw(
        st.sampled_from(["0123456789abcdef", "0123456789ABCDEF", "0123456789abcdefg", "٠١٢"])
    )
    encoded = draw(st.text(alphabet, min_size=length, max_size=length))
    trailer = draw(st.sampled_from(["", "", "\n", " ", "\x00", "/../x"]))
    return f"{algorithm}:{encoded}{trailer}"


@PROPERTY
@given(digest=st.one_of(_digest, _near_digest(), st.text(max_size=140)))
@example(digest="sha256:XYZ")
@example(digest="sha256:../../etc/passwd")
@example(digest="sha256:" + "A" * 64)
@example(digest="sha512:" + "a" * 64)
@example(digest="sha256:" + "a" * 64 + "\n")
def test_validate_digest_accepts_exactly_sha256_64_and_sha512_128_lowercase_hex(
    digest: str,
) -> None:
    valid = _VALID_DIGEST.fullmatch(digest) is not None
    if valid:
        assert validate_digest(digest) == digest
    else:
        with pytest.raises(InvalidContentError):
            validate_digest(digest)


@pytest.mark.parametrize("value", [None, 0, 1.5, b"sha256:" + b"a" * 64, ["sha256:x"], {}])
def test_validate_digest_refuses_non_strings(value: Any) -> None:
    with pytest.raises(InvalidContentError):
        validate_digest(value)


# -- WWW-Authenticate --------------------------------------------------------------------------


class _NeverRaised(Exception):
    """Stand for "no exception at all is acceptable" in :func:`_outcome`."""


_AUTH_ALPHABET = st.sampled_from(
    [*'BearerBasicrealm=service,scope" \\\t:/._-', '="', '\\"', ", ", "\r\n", "\x00", "é"]
)


@PROPERTY
@given(values=st.lists(st.one_of(st.text(max_size=200), st.lists(_AUTH_ALPHABET).map("".join))))
@example(values=['Bearer realm="unterminated'])
@example(values=['Bearer realm="a\\'])
@example(values=["Bearer ,,,,,,=,=,="])
@example(values=['Bearer realm="' + "\\" * 10_000])
@example(values=["Bearer " + "a=" * 10_000])
def test_parse_challenges_never_raises(values: list[str]) -> None:
    # No exception type is allowed: _outcome fails the test on any.
    challenges, _ = _outcome(_NeverRaised, parse_challenges, values)
    assert isinstance(challenges, list)
    for challenge in challenges:
        assert isinstance(challenge, Challenge)
        assert challenge.scheme
        assert challenge.scheme == challenge.scheme.lower()
        for key, value in challenge.params.items():
            assert key == key.lower()
            assert isinstance(value, str)


_scheme = st.from_regex(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,15}", fullmatch=True)
_param_key = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
# A quoted-string holds any visible character or space; header values carry no CR, LF or NUL.
_param_value = st.text(
    st.characters(blacklist_categories=["Cc", "Cs"], blacklist_characters="\u2028\u2029"),
    max_size=40,
)


@st.composite
def _challenge(draw: st.DrawFn) -> tuple[str, dict[str, str], str]:
    """Return (scheme, params, header text) with quoted params and quoted-pair escapes."""
    scheme = draw(_scheme)
    keys = draw(st.lists(_param_key, max_size=5, unique_by=str.lower))
    params = {key: draw(_param_value) for key in keys}
    parts = []
    for key, value in params.items():
        quoted = ""
        for char in value:
            # '"' and '\' must be escaped; any other character may be (RFC 9110 quoted-pair).
            if char in '"\\' or draw(st.booleans()):
                quoted += "\\" + char
            else:
                quoted += char
        space = draw(st.sampled_from(["", " "]))
        parts.append(f'{key}{space}={space}"{quoted}"')
    separator = draw(st.sampled_from([",", ", ", " ,", " , "]))
    text = scheme + (" " + separator.join(parts) if parts else "")
    return scheme, params, text


@PROPERTY
@given(challenges=st.lists(_challenge(), min_size=1, max_size=4), split=st.booleans())
@example(
    challenges=[("Bearer", {"realm": 'a "quoted" realm'}, 'Bearer realm="a \\"quoted\\" realm"')],
    split=False,
)
def test_well_formed_challenges_parse_back_to_their_params(
    challenges: list[tuple[str, dict[str, str], str]], split: bool
) -> None:
    # Several challenges go in one header value (comma-separated) or in one value each.
    values = (
        [text for _, _, text in challenges] if split else [", ".join(t for *_, t in challenges)]
    )

    parsed = parse_challenges(values)

    expected = [
        Challenge(scheme.lower(), {k.lower(): v for k, v in params.items()})
        for scheme, params, _ in challenges
    ]
    assert parsed == expected, values


_scope_piece = st.one_of(
    st.from_regex(r"[a-z]{1,10}", fullmatch=True),
    st.sampled_from(["repository", "registry", "repository(plugin)", ""]),
)
_scope_name = st.one_of(
    _repository, st.sampled_from(["catalog", "a:b", "", "x/y"]), st.text(max_size=8)
)
_actions = st.lists(st.sampled_from(["pull", "push", "delete", "*", "", "pull "]), max_size=4).map(
    ",".join
)
_scope = st.one_of(
    st.builds(
        lambda kind, name, acts: f"{kind}:{name}:{acts}", _scope_piece, _scope_name, _actions
    ),
    st.text(max_size=30),
)
_scopes = st.lists(st.lists(_scope, max_size=3).map(" ".join), max_size=6)


@PROPERTY
@given(scopes=_scopes, data=st.data())
def test_merge_scopes_is_idempotent_and_order_independent(
    scopes: list[str], data: st.DataObject
) -> None:
    merged = merge_scopes(scopes)

    assert merge_scopes(merged) == merged
    assert merge_scopes(data.draw(st.permutations(scopes))) == merged
    # Splitting into items or joining them with spaces changes nothing either.
    assert merge_scopes([" ".join(scopes)]) == merged
    assert merge_scopes([item for scope in scopes for item in scope.split()]) == merged
    # Duplicates are absorbed; merging two halves separately then together gives the same.
    assert merge_scopes(scopes + scopes) == merged
    half = len(scopes) // 2
    assert merge_scopes(merge_scopes(scopes[:half]) + merge_scopes(scopes[half:])) == merged
    # No action is lost: every requested (resource, action) is granted by some merged scope.
    granted: set[tuple[str, str]] = set()
    for item in merged:
        resource, _, actions = item.rpartition(":")
        granted |= {(resource, a) for a in actions.split(",")}
    for scope in scopes:
        for item in scope.split():
            resource, _, actions = item.rpartition(":")
            if ":" in resource:
                for action in filter(None, actions.split(",")):
                    assert (resource, action) in granted, (item, merged)
            else:
                assert item in merged


# -- descriptors and manifests -----------------------------------------------------------------

_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_json = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_media_type = st.one_of(
    st.sampled_from(
        [OCI_MANIFEST, OCI_INDEX, "application/octet-stream", "a/b", "", "no-slash", "a/b/c"]
    ),
    st.text(max_size=30),
)
_size = st.one_of(
    st.integers(min_value=-5, max_value=2**64),
    st.sampled_from([-1, 0, 2**62, 2**63, True, False, 1.0, "12", None]),
)
_maybe_digest = st.one_of(_digest, _near_digest(), st.text(max_size=20))
_string_map = st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)


@st.composite
def _descriptor_like(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object that looks more or less like a descriptor."""
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "mediaType": _media_type | _json,
        "digest": _maybe_digest | _json,
        "size": _size | _json,
        "annotations": _string_map | _json,
        "artifactType": st.text(max_size=20) | _json,
        "platform": st.dictionaries(st.text(max_size=8), _json, max_size=3) | _json,
        "urls": st.lists(st.text(max_size=20), max_size=3) | _json,
        "data": _json,
    }
    obj = {
        key: draw(strategy) for key, strategy in candidates.items() if draw(st.integers(0, 5)) > 0
    }
    obj.update(draw(st.dictionaries(st.text(max_size=8), _json, max_size=2)))
    return obj


@PROPERTY
@given(obj=st.one_of(_descriptor_like(), _json))
@example(obj={"mediaType": "a/b", "digest": "sha256:" + "a" * 64, "size": True})
@example(obj={"mediaType": "a/b", "digest": "sha256:" + "a" * 64, "size": -1})
@example(obj={"mediaType": "a/b", "digest": "sha256:" + "a" * 64, "size": 1.0})
@example(obj={"mediaType": "a/b", "digest": "sha256:../../etc/passwd", "size": 1})
def test_descriptor_from_json_is_valid_or_refused(obj: Any) -> None:
    desc, error = _outcome(InvalidContentError, Descriptor.from_json, obj)
    if error is not None:
        return
    assert validate_digest(desc.digest) == desc.digest
    assert type(desc.size) is int
    assert desc.size >= 0
    assert isinstance(desc.media_type, str)
    assert re.fullmatch(r"[^/\s]+/[^/\s]+", desc.media_type)
    # What was accepted writes back out to a descriptor that reads the same.
    again = Descriptor.from_json(json.loads(json.dumps(desc.to_json())))
    assert again == desc
    assert again.annotations == (desc.annotations or None)


@PROPERTY
@given(
    content=st.one_of(
        st.binary(max_size=200),
        _json.map(lambda value: json.dumps(value).encode()),
        st.builds(
            lambda media_type, config, layers: json.dumps(
                {"mediaType": media_type, "config": config, "layers": layers}
            ).encode(),
            _media_type,
            _descriptor_like() | _json,
            st.lists(_descriptor_like(), max_size=3) | _json,
        ),
    ),
    media_type=st.sampled_from([OCI_MANIFEST, OCI_INDEX]),
)
@example(content=b"\xff\xfe\x00", media_type=OCI_MANIFEST)
@example(content=b'{"config": {"size": 1e999}}', media_type=OCI_MANIFEST)
def test_manifest_parsing_raises_only_invalid_content_error(
    content: bytes, media_type: str
) -> None:
    _check_manifest_parse(content, media_type)


def _check_manifest_parse(content: bytes, media_type: str) -> None:
    desc = Descriptor(media_type, "sha256:" + "0" * 64, len(content))
    _, error = _outcome(InvalidContentError, parse_manifest, media_type, content)
    if error is not None:
        return
    children, error = _outcome(InvalidContentError, successors, desc, content)
    if error is not None:
        return
    for child in children:
        assert validate_digest(child.digest) == child.digest
        assert child.size >= 0


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"[" * 100_000, id="100k-nested-arrays"),
        pytest.param(b'{"a":' * 100_000, id="100k-nested-objects"),
        pytest.param(b'{"config":' + b"[" * 50_000, id="nested-config"),
    ],
)
def test_deeply_nested_manifest_json_is_invalid_content(content: bytes) -> None:
    # Valid-looking JSON nested deeper than the decoder's recursion limit: 100 kB, far under the
    # 4 MiB manifest cap. Python's json raises RecursionError on it, which is no ValueError.
    _check_manifest_parse(content, OCI_MANIFEST)
