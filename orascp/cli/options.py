"""Turn the per-side flags (``--from-*`` / ``--to-*``) into a source or destination."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

from orascp.cli.env import Environment
from orascp.errors import UsageError, quote
from orascp.reference import parse_layout_reference, parse_registry_reference
from orascp.referrers import parse_mode
from orascp.registry.credentials import Credential, CredentialStore
from orascp.targets import LayoutSide, RegistrySide, Side

__all__ = ["SideFlags", "parse_headers", "read_secret", "resolve_side"]


@dataclass(slots=True)
class SideFlags:
    """Hold the flags of one side, as given."""

    prefix: str  # "from" or "to"
    oci_layout: bool = False
    plain_http: bool = False
    username: str | None = None
    password: str | None = None
    password_stdin: bool = False
    identity_token: str | None = None
    registry_config: list[str] = field(default_factory=list)
    ca_file: str | None = None
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    headers: list[str] = field(default_factory=list)
    distribution_spec: str | None = None

    def flag(self, name: str) -> str:
        """Return the full flag name, e.g. ``--from-ca-file``."""
        return f"--{self.prefix}-{name}"

    def registry_flags(self) -> list[str]:
        """Return the flags given that only make sense for a registry."""
        given = {
            "plain-http": self.plain_http,
            "username": self.username,
            "password": self.password,
            "password-stdin": self.password_stdin,
            "identity-token": self.identity_token,
            "registry-config": self.registry_config,
            "ca-file": self.ca_file,
            "insecure": self.insecure,
            "cert-file": self.cert_file,
            "key-file": self.key_file,
            "header": self.headers,
            "distribution-spec": self.distribution_spec,
        }
        return [self.flag(name) for name, value in given.items() if value]


def parse_headers(values: list[str], flag: str) -> tuple[tuple[str, str], ...]:
    """Parse ``Name: value`` headers; refuse a missing colon or an empty name."""
    out = []
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
            raise UsageError(f"{flag} {quote(value)} is not of the form 'Name: value'")
        out.append((name.strip(), rest.strip()))
    return tuple(out)


def read_secret(stream: TextIO) -> str:
    """Read a password or token from a stream, dropping the final line break."""
    return stream.read().rstrip("\r\n")


def _credential(flags: SideFlags, registry: str, env: Environment, stdin: TextIO) -> Credential:
    if flags.username is not None and flags.identity_token:
        raise UsageError(
            f"{flags.flag('username')} and {flags.flag('identity-token')} cannot be used together"
        )
    if flags.password is not None and flags.password_stdin:
        raise UsageError(
            f"{flags.flag('password')} and {flags.flag('password-stdin')} cannot be used together"
        )
    if flags.password is not None:
        env.warn(
            f"a password given with {flags.flag('password')} is visible to other users of this"
            f" machine; use {flags.flag('password-stdin')} instead"
        )
    password = read_secret(stdin) if flags.password_stdin else flags.password
    if flags.identity_token:
        return Credential(identity_token=flags.identity_token, source="command line")
    if flags.username is not None or password:
        if not flags.username:
            raise UsageError(f"{flags.flag('password')} needs {flags.flag('username')}")
        return Credential(username=flags.username, password=password or "", source="command line")
    return CredentialStore(flags.registry_config).get(registry)


def resolve_side(raw: str, flags: SideFlags, env: Environment, stdin: TextIO | None = None) -> Side:
    """Parse one side's reference and flags, reading credentials where they are stored."""
    if flags.oci_layout:
        if registry_flags := flags.registry_flags():
            raise UsageError(
                f"{', '.join(registry_flags)} cannot be used with {flags.flag('oci-layout')}:"
                " registry options do not apply to a layout directory"
            )
        return LayoutSide(parse_layout_reference(raw), raw)
    reference = parse_registry_reference(raw)
    if (flags.cert_file and not flags.key_file) or (flags.key_file and not flags.cert_file):
        raise UsageError(f"{flags.flag('cert-file')} and {flags.flag('key-file')} go together")
    if flags.plain_http and (flags.ca_file or flags.insecure or flags.cert_file):
        raise UsageError(f"{flags.flag('plain-http')} cannot be used with TLS options")
    headers = parse_headers(flags.headers, flags.flag("header"))
    mode = (
        parse_mode(flags.distribution_spec, flags.flag("distribution-spec"))
        if flags.distribution_spec is not None
        else None
    )
    credential = _credential(flags, reference.registry, env, stdin or sys.stdin)
    return RegistrySide(
        reference,
        raw,
        plain_http=True if flags.plain_http else None,
        credential=credential,
        ca_file=flags.ca_file,
        insecure=flags.insecure,
        cert_file=flags.cert_file,
        key_file=flags.key_file,
        headers=headers,
        referrers_mode=mode,
    )
