"""Parse registry and OCI-layout references.

Registry references follow the distribution grammar, ``host[:port]/path[:tag|@digest]``, the way
``oras`` reads them: the first ``/``-separated component is always the registry (there is no
implicit ``docker.io`` and no implicit ``library/``). Every check happens here, before any network
call, so that a bad reference costs nothing and names the part that is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from orascp.descriptor import validate_digest
from orascp.errors import InvalidContentError, InvalidReferenceError, quote

__all__ = [
    "LayoutReference",
    "RegistryReference",
    "is_loopback_host",
    "parse_layout_reference",
    "parse_registry_reference",
    "split_tags",
    "validate_repository",
    "validate_tag",
]

# distribution/reference: path components are lowercase alphanumerics joined by `.`, `_`, `__`
# or runs of `-`.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOST_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOSTNAME_RE = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
# distribution/reference caps the name (registry + "/" + repository) at 255 characters.
_MAX_NAME_LENGTH = 255


def validate_tag(tag: str, *, what: str = "tag") -> str:
    """Return ``tag`` if it is a valid tag; raise :class:`InvalidReferenceError` otherwise."""
    if not _TAG_RE.fullmatch(tag):
        if len(tag) > 128:
            reason = f"{what} is {len(tag)} characters long; the limit is 128"
        elif not tag:
            reason = f"{what} is empty"
        else:
            reason = (
                f"{what} {quote(tag)} is invalid: use letters, digits, '_', '.' and '-', "
                "not starting with '.' or '-'"
            )
        raise InvalidReferenceError(reason)
    return tag


def validate_repository(name: str, *, what: str = "repository") -> str:
    """Return ``name`` if it is a valid repository path (``team/app``); raise otherwise."""
    if len(name) > 255 or not _REPOSITORY_RE.fullmatch(name):
        raise InvalidReferenceError(
            f"invalid {what} {quote(name)}: lowercase letters, digits and separators (. _ - /),"
            " e.g. team/app"
        )
    return name


def _validate_digest_ref(digest: str) -> str:
    try:
        return validate_digest(digest)
    except InvalidContentError as exc:
        raise InvalidReferenceError(str(exc)) from None


def _split_host(host: str) -> tuple[str, int | None]:
    """Validate a registry host and return (hostname, port)."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise InvalidReferenceError(f"registry {quote(host)} has an unclosed '['")
        literal, rest = host[1:end], host[end + 1 :]
        if "%" in literal:
            raise InvalidReferenceError(
                f"registry {quote(host)}: IPv6 zone identifiers are not supported"
            )
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise InvalidReferenceError(
                f"registry {quote(host)} is not a valid IPv6 address"
            ) from None
        name = f"[{literal}]"
    else:
        name, sep, rest = host.partition(":")
        rest = sep + rest
        if not _HOSTNAME_RE.fullmatch(name):
            hint = " (an IPv6 address needs brackets: [::1]:5000)" if host.count(":") > 1 else ""
            raise InvalidReferenceError(f"registry {quote(host)} is not a valid host name{hint}")
    if not rest:
        return name, None
    if not rest.startswith(":"):
        raise InvalidReferenceError(f"registry {quote(host)} is not a valid host name")
    port_text = rest[1:]
    # isdigit() alone accepts non-ASCII (e.g. full-width) digits, which httpx would reinterpret.
    if (
        not (port_text.isascii() and port_text.isdigit())
        or len(port_text) > 5
        or not 0 < int(port_text) < 65536
    ):
        raise InvalidReferenceError(
            f"registry {quote(host)} has an invalid port {quote(port_text)}"
        )
    return name, int(port_text)


def is_loopback_host(hostname: str) -> bool:
    """Tell whether a registry host names this machine (``localhost``, 127.0.0.0/8, ``[::1]``)."""
    name = hostname.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class RegistryReference:
    """Name content in a registry: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str | None:
        """Return the digest if present, else the tag: what the registry is asked for."""
        return self.digest or self.tag

    @property
    def hostname(self) -> str:
        """Return the registry host without its port (brackets kept for IPv6)."""
        return _split_host(self.registry)[0]

    def with_reference(self, reference: str | None) -> RegistryReference:
        """Return this repository with another tag or digest."""
        if reference is None:
            return RegistryReference(self.registry, self.repository)
        if reference.startswith(("sha256:", "sha512:")):
            return RegistryReference(self.registry, self.repository, digest=reference)
        return RegistryReference(self.registry, self.repository, tag=reference)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_registry_reference(raw: str) -> RegistryReference:
    """Parse ``host[:port]/path[:tag|@digest]``; raise :class:`InvalidReferenceError` if invalid."""
    try:
        return _parse_registry_reference(raw)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(
            f"invalid reference {quote(raw)}: {exc.message}",
            hint="write it as <registry>/<repository>[:tag|@digest], "
            "e.g. localhost:5000/team/app:v1",
        ) from None


def _parse_registry_reference(raw: str) -> RegistryReference:
    if not raw:
        raise InvalidReferenceError("the reference is empty")
    if any(c.isspace() for c in raw):
        raise InvalidReferenceError("it contains white space")
    host, slash, rest = raw.partition("/")
    if not slash or not rest:
        raise InvalidReferenceError("missing repository (the registry host comes first)")
    _split_host(host)
    digest: str | None = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        _validate_digest_ref(digest)
    tag: str | None = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
        validate_tag(tag)
    if not rest:
        raise InvalidReferenceError("missing repository")
    if not _REPOSITORY_RE.fullmatch(rest):
        if rest.lower() != rest and _REPOSITORY_RE.fullmatch(rest.lower()):
            raise InvalidReferenceError(f"repository {quote(rest)} must be lowercase")
        raise InvalidReferenceError(
            f"repository {quote(rest)} is invalid: use lowercase letters and digits, separated by "
            "'/', '.', '_', '__' or '-'"
        )
    if len(host) + 1 + len(rest) > _MAX_NAME_LENGTH:
        raise InvalidReferenceError(
            f"registry and repository together are longer than {_MAX_NAME_LENGTH} characters"
        )
    return RegistryReference(registry=host, repository=rest, tag=tag, digest=digest)


@dataclass(frozen=True, slots=True)
class LayoutReference:
    """Name content in an OCI image layout directory: ``path[:tag|@digest]``."""

    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str | None:
        """Return the digest if present, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        if self.digest:
            return f"{self.path}@{self.digest}"
        if self.tag:
            return f"{self.path}:{self.tag}"
        return self.path


def parse_layout_reference(raw: str) -> LayoutReference:
    """Parse ``path[:tag|@digest]``: split at the last ``@``, else at the last ``:``.

    A ``:`` followed by a ``/`` belongs to the path, not to a tag.
    """
    path, tag, digest = raw, None, None
    try:
        if "@" in raw:
            path, _, digest = raw.rpartition("@")
            _validate_digest_ref(digest)
        elif ":" in raw and "/" not in raw.rpartition(":")[2]:
            path, _, tag = raw.rpartition(":")
            validate_tag(tag)
        if not path:
            raise InvalidReferenceError("the layout path is empty")
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(
            f"invalid OCI layout reference {quote(raw)}: {exc.message}",
            hint="write it as <directory>[:tag|@digest], e.g. ./out:v1",
        ) from None
    return LayoutReference(path=path, tag=tag, digest=digest)


def split_tags(raw: str) -> tuple[str, tuple[str, ...]]:
    """Split a destination ``ref:t1,t2,t3`` into ``ref:t1`` and the extra tags ``(t2, t3)``."""
    first, *extra = raw.split(",")
    for tag in extra:
        try:
            validate_tag(tag, what="extra tag")
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(
                f"invalid destination {quote(raw)}: {exc.message}",
                hint="list extra tags after the first one with commas: dst:v1,latest,stable",
            ) from None
    return first, tuple(extra)
