"""The ``cp`` command: flags and help, option parsing, and the run that wires display to engine."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated

import typer

from orascp.cli.env import Environment
from orascp.descriptor import Descriptor
from orascp.errors import (
    CopyError,
    ExitStatus,
    InvalidReferenceError,
    NotFoundError,
    OrascpError,
    Origin,
    UsageError,
    quote,
)
from orascp.reference import (
    parse_layout_reference,
    parse_registry_reference,
    split_tags,
)
from orascp.targets import LayoutSide, RegistrySide, Side, describe

__all__ = ["CopyRequest", "parse_request", "register", "run_copy"]

EXAMPLES = """
Examples:

  Copy within one registry (every blob is mounted, no bytes move):
    orascp cp localhost:5000/team-a/app:v1 localhost:5000/team-b/app:v1

  Copy to another registry and apply three tags:
    orascp cp localhost:5000/app:v1 127.0.0.1:5001/mirror/app:v1,latest,stable

  Copy from a registry into an OCI image layout directory, and back:
    orascp cp localhost:5000/app@sha256:<hex> --to-oci-layout ./out:v1
    orascp cp --from-oci-layout ./out:v1 localhost:5000/restored/app:v1

  Copy between two OCI layouts, without any network:
    orascp cp --from-oci-layout ./out@sha256:<hex> --to-oci-layout ./copy:v1
"""


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """Hold a validated ``cp`` invocation."""

    source: Side
    destination: Side
    tags: tuple[str, ...]  # the destination's tag(s), first one included
    expected_digest: str | None
    concurrency: int
    mount: bool


def _side(raw: str, *, layout: bool, plain_http: bool | None) -> Side:
    if layout:
        return LayoutSide(parse_layout_reference(raw), raw)
    return RegistrySide(parse_registry_reference(raw), raw, plain_http)


def parse_request(
    source: str,
    destination: str,
    *,
    from_oci_layout: bool = False,
    to_oci_layout: bool = False,
    from_plain_http: bool = False,
    to_plain_http: bool = False,
    concurrency: int = 3,
    mount: bool = True,
) -> CopyRequest:
    """Validate every reference and flag before anything touches the network or the disk."""
    if from_oci_layout and from_plain_http:
        raise UsageError("--from-plain-http cannot be used with --from-oci-layout")
    if to_oci_layout and to_plain_http:
        raise UsageError("--to-plain-http cannot be used with --to-oci-layout")
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    src = _side(source, layout=from_oci_layout, plain_http=from_plain_http or None)
    if src.reference.reference is None:
        raise InvalidReferenceError(
            f"source {quote(source)} has no tag or digest",
            hint='name what to copy, as "<name>:<tag>" or "<name>@<digest>"',
        )
    first, extra = split_tags(destination)
    dst = _side(first, layout=to_oci_layout, plain_http=to_plain_http or None)
    ref = dst.reference
    if ref.tag and ref.digest:
        raise InvalidReferenceError(
            f"destination {quote(first)} has both a tag and a digest; give one of them"
        )
    if ref.digest and extra:
        raise InvalidReferenceError(
            f"destination {quote(destination)} is a digest; extra tags need a tag destination"
        )
    tags = ((ref.tag,) if ref.tag else ()) + extra
    return CopyRequest(src, dst, tags, ref.digest, concurrency, mount)


def _render_error(exc: OrascpError, request: CopyRequest | None, env: Environment) -> None:
    if isinstance(exc, CopyError) and request is not None:
        side = request.source if exc.origin is Origin.SOURCE else request.destination
        kind = "registry" if isinstance(side, RegistrySide) else "oci-layout"
        cause = exc.cause
        prefix = "not found: " if isinstance(cause, NotFoundError) else ""
        message = f"{exc.origin.value} {kind} {quote(side.raw)}: {prefix}{cause}"
        hint = exc.hint
        if hint is None and isinstance(cause, NotFoundError) and exc.origin is Origin.SOURCE:
            hint = "check the reference: the tag or digest does not exist in that repository"
        env.error(message, hint)
    else:
        env.error(str(exc), exc.hint)


async def _run(request: CopyRequest, env: Environment) -> Descriptor:
    from orascp.display import TextDisplay
    from orascp.engine import CopyHooks, CopyOptions, copy
    from orascp.targets import open_targets

    display = TextDisplay(env.stdout)
    async with open_targets(
        request.source, request.destination, concurrency=request.concurrency
    ) as targets:
        mount_source = targets.mount_source if request.mount else None
        options = CopyOptions(
            concurrency=request.concurrency,
            mount_from=(lambda _desc: [mount_source]) if mount_source else None,
            # Hook up the display: its methods have exactly the hooks' signatures.
            hooks=CopyHooks(
                pre_copy=display.pre_copy,
                post_copy=display.post_copy,
                on_copy_skipped=display.on_copy_skipped,
                on_mounted=display.on_mounted,
                on_deduplicated=display.on_deduplicated,
            ),
        )
        reference = request.source.reference.reference
        assert reference is not None  # parse_request refuses a source without one
        result = await copy(
            targets.source,
            reference,
            targets.destination,
            request.tags,
            options,
            expected_digest=request.expected_digest,
        )
    return result.root


def _run_with_signals(request: CopyRequest, env: Environment) -> Descriptor:
    """Run the copy; SIGTERM cancels it like Ctrl-C does, so cleanup code runs either way."""
    import asyncio  # not at the top: --help does not need it
    import signal

    async def main() -> Descriptor:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        terminated = False

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await _run(request, env)
        except asyncio.CancelledError:
            if terminated:
                raise _Terminated() from None
            raise

    return asyncio.run(main())


class _Terminated(Exception):
    """Signal that SIGTERM stopped the copy."""


def run_copy(request: CopyRequest, env: Environment) -> ExitStatus:
    """Copy, print the summary and return the exit status."""
    try:
        root = _run_with_signals(request, env)
    except OrascpError as exc:
        _render_error(exc, request, env)
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        env.error("interrupted; run the same command again to finish the copy")
        return ExitStatus.INTERRUPTED
    except _Terminated:
        env.error("terminated; run the same command again to finish the copy")
        return ExitStatus.TERMINATED
    out = env.stdout
    # The destination is shown with its first tag only, as oras does.
    out.write(f"Copied {describe(request.source)} => {describe(request.destination)}\n")
    for tag in request.tags[1:]:
        out.write(f"Tagged {tag}\n")
    out.write(f"Digest: {root.digest}\n")
    out.flush()
    return ExitStatus.OK


def register(app: typer.Typer) -> None:
    """Add the ``cp`` command (and its alias ``copy``) to ``app``."""

    def cp(
        source: Annotated[
            str,
            typer.Argument(
                help="What to copy: <registry>/<repo>{:<tag>|@<digest>}, or a"
                " layout path with --from-oci-layout.",
                show_default=False,
            ),
        ],
        destination: Annotated[
            str,
            typer.Argument(
                help="Where to copy it: <registry>/<repo>[:<tag>[,<tag>...]], or a"
                " layout path with --to-oci-layout.",
                show_default=False,
            ),
        ],
        from_oci_layout: Annotated[
            bool,
            typer.Option(
                "--from-oci-layout", help="Read the source from an OCI image layout directory."
            ),
        ] = False,
        to_oci_layout: Annotated[
            bool, typer.Option("--to-oci-layout", help="Write to an OCI image layout directory.")
        ] = False,
        from_plain_http: Annotated[
            bool,
            typer.Option(
                "--from-plain-http",
                help="Speak plain HTTP to the source registry (loopback hosts do by default).",
            ),
        ] = False,
        to_plain_http: Annotated[
            bool,
            typer.Option(
                "--to-plain-http",
                help="Speak plain HTTP to the destination registry (loopback hosts do by default).",
            ),
        ] = False,
        concurrency: Annotated[
            int, typer.Option("--concurrency", min=1, help="Transfers in flight at once.")
        ] = 3,
        no_mount: Annotated[
            bool,
            typer.Option(
                "--no-mount", help="Never mount blobs across repositories; always copy the bytes."
            ),
        ] = False,
    ) -> None:
        env = Environment()
        try:
            request = parse_request(
                source,
                destination,
                from_oci_layout=from_oci_layout,
                to_oci_layout=to_oci_layout,
                from_plain_http=from_plain_http,
                to_plain_http=to_plain_http,
                concurrency=concurrency,
                mount=not no_mount,
            )
        except (InvalidReferenceError, UsageError) as exc:
            env.error(str(exc), exc.hint)
            sys.exit(ExitStatus.USAGE)
        sys.exit(run_copy(request, env))

    doc = (
        "Copy an artifact and everything it references (an image index copies whole)"
        " from SOURCE to DESTINATION.\n\n"
        "Blobs are mounted when both sides are repositories of the same registry.\n" + EXAMPLES
    )
    cp.__doc__ = doc
    app.command("cp", help=doc)(cp)
    app.command("copy", help=doc, hidden=True)(cp)
