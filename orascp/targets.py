"""Open the two sides of a copy from parsed references and flags.

This is where the CLI's words (a registry reference, an OCI-layout path, ``--*-plain-http``)
become targets; it keeps the CLI free of HTTP and the engine free of flags. Two sides on the same
registry share one client, so they share connections, and mounting between them is possible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orascp.content import ReadOnlyTarget, Target
from orascp.reference import LayoutReference, RegistryReference, is_loopback_host

if TYPE_CHECKING:
    from orascp.ocilayout import OCILayout
    from orascp.registry.client import RegistryClient, Repository

__all__ = ["LayoutSide", "OpenTargets", "RegistrySide", "Side", "describe", "open_targets"]


@dataclass(frozen=True, slots=True)
class RegistrySide:
    """Name a repository of a registry and how to reach it."""

    reference: RegistryReference
    raw: str
    # None: decide by host (plain HTTP for loopback hosts only).
    plain_http: bool | None = None

    def use_plain_http(self) -> bool:
        """Return whether to speak plain HTTP to this side's registry."""
        if self.plain_http is not None:
            return self.plain_http
        return is_loopback_host(self.reference.hostname)


@dataclass(frozen=True, slots=True)
class LayoutSide:
    """Name an OCI image layout directory."""

    reference: LayoutReference
    raw: str


Side = RegistrySide | LayoutSide


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
    source: Side, destination: Side, *, concurrency: int
) -> AsyncIterator[OpenTargets]:
    """Open both sides, sharing one registry client where they are on the same registry."""
    # Imported here, not at the top: --help needs neither asyncio nor httpx, and a
    # layout-to-layout copy needs no httpx.
    from orascp.ocilayout import OCILayout
    from orascp.registry.client import RegistryClient, RegistryOptions, Repository

    clients: dict[tuple[str, bool], RegistryClient] = {}
    layouts: list[OCILayout] = []

    def repository(side: RegistrySide) -> Repository:
        key = (side.reference.registry, side.use_plain_http())
        client = clients.get(key)
        if client is None:
            # Two connections per transfer (source GET, destination PUT), a few spare.
            options = RegistryOptions(plain_http=key[1], max_connections=2 * concurrency + 4)
            client = clients[key] = RegistryClient(key[0], options)
        return client.repository(side.reference.repository)

    try:
        src: ReadOnlyTarget
        dst: Target
        if isinstance(source, RegistrySide):
            src = repository(source)
        else:
            src = OCILayout.open_source(source.reference.path)
        if isinstance(destination, RegistrySide):
            dst = repository(destination)
        else:
            layout = OCILayout.open_destination(destination.reference.path)
            layouts.append(layout)
            dst = layout
        mount_source = None
        if (
            isinstance(src, Repository)
            and isinstance(dst, Repository)
            and src.client is dst.client
            and src.name != dst.name
        ):
            mount_source = src.name
        yield OpenTargets(src, dst, mount_source)
    finally:
        for layout in layouts:
            layout.close()
        for client in clients.values():
            await client.aclose()
