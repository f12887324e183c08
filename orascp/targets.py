"""Open the two sides of a copy from parsed references and flags.

This is where the CLI's words (a registry reference, an OCI-layout path, ``--*-plain-http``)
become targets; it keeps the CLI free of HTTP and the engine free of flags. Two sides on the same
registry share one client, so they share connections, and mounting between them is possible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orascp.content import ReadOnlyTarget, Target
from orascp.errors import CopyError, OrascpError, Origin
from orascp.reference import LayoutReference, RegistryReference, is_loopback_host
from orascp.referrers import Mode
from orascp.registry.credentials import Credential

if TYPE_CHECKING:
    from orascp.ocilayout import OCILayout
    from orascp.registry.client import RegistryClient, RegistryOptions, Repository
    from orascp.registry.trace import HttpTracer

__all__ = [
    "LayoutSide",
    "OpenTargets",
    "RegistrySide",
    "Side",
    "check_login",
    "describe",
    "open_targets",
]


@dataclass(frozen=True, slots=True)
class RegistrySide:
    """Name a repository of a registry and how to reach it."""

    reference: RegistryReference
    raw: str
    # None: decide by host (plain HTTP for loopback hosts without TLS options only).
    plain_http: bool | None = None
    credential: Credential = field(default_factory=Credential)
    ca_file: str | None = None
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # --*-distribution-spec: how to find and record referrers; None decides by the registry.
    referrers_mode: Mode | None = None

    def use_plain_http(self) -> bool:
        """Return whether to speak plain HTTP to this side's registry.

        Loopback hosts default to plain HTTP, but any TLS option means the user expects TLS.
        """
        if self.plain_http is not None:
            return self.plain_http
        if self.ca_file or self.insecure or self.cert_file:
            return False
        return is_loopback_host(self.reference.hostname)

    def connection_key(self) -> tuple[object, ...]:
        """Return what must be equal for two sides to share one client (and its token)."""
        return (
            self.reference.registry,
            self.use_plain_http(),
            self.credential,
            self.ca_file,
            self.insecure,
            self.cert_file,
            self.key_file,
            self.headers,
        )


@dataclass(frozen=True, slots=True)
class LayoutSide:
    """Name an OCI image layout directory."""

    reference: LayoutReference
    raw: str


Side = RegistrySide | LayoutSide


def _same_registry(a: RegistrySide, b: RegistrySide) -> bool:
    return a.reference.registry == b.reference.registry and a.use_plain_http() == b.use_plain_http()


def describe(side: Side) -> str:
    """Return the side as ``oras cp`` shows it, e.g. ``[registry] localhost:5000/app:v1``."""
    kind = "registry" if isinstance(side, RegistrySide) else "oci-layout"
    return f"[{kind}] {side.raw}"


@dataclass(frozen=True, slots=True)
class OpenTargets:
    """Hold the opened source and destination, and what mounting between them allows."""

    source: ReadOnlyTarget
    destination: Target
    # The source repository when both sides are repositories of one registry, reached the same way.
    mount_source: str | None


@asynccontextmanager
async def open_targets(
    source: Side,
    destination: Side,
    *,
    concurrency: int,
    trace: Callable[[str], None] | None = None,
    mount_from: Sequence[str] = (),
) -> AsyncIterator[OpenTargets]:
    """Open both sides, sharing one registry client where they are on the same registry.

    With ``trace``, every HTTP exchange is written to it, redacted (``--debug``).
    """
    # Imported here, not at the top: --help needs neither asyncio nor httpx, and a
    # layout-to-layout copy needs no httpx.
    from orascp.ocilayout import OCILayout
    from orascp.registry.client import RegistryClient

    clients: dict[tuple[object, ...], RegistryClient] = {}
    layouts: list[OCILayout] = []
    tracer = None
    if trace is not None:
        from orascp.registry.trace import HttpTracer

        custom = [
            name
            for side in (source, destination)
            if isinstance(side, RegistrySide)
            for name, _ in side.headers
        ]
        tracer = HttpTracer(trace, secret_headers=custom)

    def repository(side: RegistrySide, *scopes: str) -> Repository:
        key = side.connection_key()
        client = clients.get(key)
        if client is None:
            # Two connections per transfer (source GET, destination PUT), a few spare.
            options = _registry_options(side, max_connections=2 * concurrency + 4, tracer=tracer)
            client = clients[key] = RegistryClient(side.reference.registry, options)
        # One token per registry for the whole copy: ask for every scope it will need.
        client.auth.add_scopes(*scopes)
        return client.repository(side.reference.repository, side.referrers_mode)

    mount_source = None
    if (
        isinstance(source, RegistrySide)
        and isinstance(destination, RegistrySide)
        and _same_registry(source, destination)
        and source.reference.repository != destination.reference.repository
    ):
        # With other credentials on each side the destination's token may not cover the
        # source: the first refused mount turns mounting off and the copy goes on.
        mount_source = source.reference.repository

    try:
        src: ReadOnlyTarget
        dst: Target
        if isinstance(source, RegistrySide):
            src = repository(source, f"repository:{source.reference.repository}:pull")
        else:
            try:
                src = OCILayout.open_source(source.reference.path)
            except OrascpError as exc:
                raise CopyError("open", Origin.SOURCE, exc) from exc
        if isinstance(destination, RegistrySide):
            scopes = [f"repository:{destination.reference.repository}:pull,push"]
            # A mount needs pull on the repository it mounts from, in the destination's token.
            for name in (*mount_from, mount_source):
                if name:
                    scopes.append(f"repository:{name}:pull")
            dst = repository(destination, *scopes)
        else:
            try:
                layout = OCILayout.open_destination(destination.reference.path)
            except OrascpError as exc:
                raise CopyError("open", Origin.DESTINATION, exc) from exc
            layouts.append(layout)
            dst = layout
        yield OpenTargets(src, dst, mount_source)
    finally:
        for layout in layouts:
            layout.close()
        for client in clients.values():
            await client.aclose()


async def check_login(side: RegistrySide) -> None:
    """Verify the side's credentials against its registry (``orascp login``)."""
    from orascp.registry.client import RegistryClient

    client = RegistryClient(side.reference.registry, _registry_options(side))
    try:
        await client.check_credentials()
    finally:
        await client.aclose()


def _registry_options(
    side: RegistrySide, *, max_connections: int = 16, tracer: HttpTracer | None = None
) -> RegistryOptions:
    from orascp.registry.client import RegistryOptions

    return RegistryOptions(
        plain_http=side.use_plain_http(),
        credential=side.credential,
        ca_file=side.ca_file,
        insecure=side.insecure,
        cert_file=side.cert_file,
        key_file=side.key_file,
        headers=side.headers,
        max_connections=max_connections,
        tracer=tracer,
    )
