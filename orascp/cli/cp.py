"""The ``cp`` command: flags and help, option parsing, and the run that wires display to engine."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from orascp.cli.env import Environment
from orascp.cli.options import SideFlags, resolve_side
from orascp.descriptor import Descriptor
from orascp.display.record import Recorder, result_document
from orascp.display.text import Display, NullDisplay, TextDisplay
from orascp.errors import (
    AuthenticationError,
    CopyError,
    ExitStatus,
    InvalidReferenceError,
    NotFoundError,
    OrascpError,
    Origin,
    TLSError,
    UsageError,
    quote,
)
from orascp.platform import Platform, parse_platform
from orascp.reference import (
    parse_layout_reference,
    parse_registry_reference,
    split_tags,
)
from orascp.targets import RegistrySide, Side, describe

if TYPE_CHECKING:
    from orascp.engine import CopyHooks

__all__ = ["CopyRequest", "parse_request", "register", "run_copy"]

EXAMPLES = """
Examples:

\b
  Copy within one registry (every blob is mounted, no bytes move):
    orascp cp localhost:5000/team-a/app:v1 localhost:5000/team-b/app:v1

\b
  Copy to another registry and apply three tags:
    orascp cp localhost:5000/app:v1 127.0.0.1:5001/mirror/app:v1,latest,stable

\b
  Copy from a registry into an OCI image layout directory, and back:
    orascp cp localhost:5000/app@sha256:<hex> --to-oci-layout ./out:v1
    orascp cp --from-oci-layout ./out:v1 localhost:5000/restored/app:v1

\b
  Copy between two OCI layouts, without any network:
    orascp cp --from-oci-layout ./out@sha256:<hex> --to-oci-layout ./copy:v1

\b
  Print the result as JSON for a script:
    orascp cp --format json localhost:5000/app:v1 localhost:5000/backup/app:v1
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
    force: bool = False
    output: Literal["text", "json"] = "text"
    tty: bool = True  # False: --no-tty
    debug: bool = False
    recursive: bool = False
    platforms: tuple[Platform, ...] = ()


def parse_request(
    source: str,
    destination: str,
    src_flags: SideFlags,
    dst_flags: SideFlags,
    *,
    env: Environment,
    concurrency: int = 3,
    mount: bool = True,
    force: bool = False,
    output: str = "text",
    tty: bool = True,
    debug: bool = False,
    recursive: bool = False,
    platforms: Sequence[str] = (),
) -> CopyRequest:
    """Validate every reference and flag before anything touches the network or the disk."""
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    if output not in ("text", "json"):
        raise UsageError(f"--format must be text or json, got {quote(output)}")
    wanted = tuple(parse_platform(p) for p in platforms)
    if src_flags.password_stdin and dst_flags.password_stdin:
        raise UsageError(
            "--from-password-stdin and --to-password-stdin cannot both read standard input"
        )
    first, extra = split_tags(destination)
    # Both references are checked before any credential is looked up.
    if src_flags.oci_layout:
        parse_layout_reference(source)
    else:
        parse_registry_reference(source)
    ref = parse_layout_reference(first) if dst_flags.oci_layout else parse_registry_reference(first)
    if ref.tag and ref.digest:
        raise InvalidReferenceError(
            f"destination {quote(first)} has both a tag and a digest; give one of them"
        )
    if ref.digest and extra:
        raise InvalidReferenceError(
            f"destination {quote(destination)} is a digest; extra tags need a tag destination"
        )
    src = resolve_side(source, src_flags, env)
    if src.reference.reference is None:
        raise InvalidReferenceError(
            f"source {quote(source)} has no tag or digest",
            hint='name what to copy, as "<name>:<tag>" or "<name>@<digest>"',
        )
    dst = resolve_side(first, dst_flags, env)
    tags = ((ref.tag,) if ref.tag else ()) + extra
    return CopyRequest(
        src,
        dst,
        tags,
        ref.digest,
        concurrency,
        mount,
        force,
        output="json" if output == "json" else "text",
        tty=tty,
        debug=debug,
        recursive=recursive,
        platforms=wanted,
    )


def _render_error(exc: OrascpError, request: CopyRequest | None, env: Environment) -> None:
    if isinstance(exc, CopyError) and request is not None:
        side = request.source if exc.origin is Origin.SOURCE else request.destination
        kind = "registry" if isinstance(side, RegistrySide) else "oci-layout"
        cause = exc.cause
        prefix = "not found: " if isinstance(cause, NotFoundError) else ""
        message = f"{exc.origin.value} {kind} {quote(side.raw)}: {prefix}{cause}"
        hint = exc.hint
        flag = "--from" if exc.origin is Origin.SOURCE else "--to"
        host = side.reference.registry if isinstance(side, RegistrySide) else ""
        if isinstance(cause, TLSError):
            hint = (
                f"pass the CA certificate of {host} with {flag}-ca-file (it also turns HTTPS"
                f" on for loopback hosts), or skip verification with {flag}-insecure"
            )
        elif isinstance(cause, AuthenticationError):
            hint = (
                f"check the credentials for {host}: run orascp login {host}, or pass"
                f" {flag}-username with {flag}-password-stdin"
            )
        elif hint is None and isinstance(cause, NotFoundError) and exc.origin is Origin.SOURCE:
            hint = (
                "check the reference: the tag or digest does not exist in that repository"
                if isinstance(side, RegistrySide)
                else "check the layout directory and the tag or digest in it"
            )
        env.error(message, hint)
    else:
        env.error(str(exc), exc.hint)


def _display(request: CopyRequest, env: Environment) -> Display:
    """Pick what the user sees while the copy runs (see the README's "Output")."""
    if request.output == "json":
        return NullDisplay()
    term = os.environ.get("TERM", "")
    if request.tty and not request.debug and term != "dumb" and env.stderr.isatty():
        # Imported only here: rich's rendering modules cost tens of milliseconds to load.
        from rich.console import Console

        from orascp.display.tty import ProgressDisplay

        return ProgressDisplay(Console(file=env.stderr, highlight=False))
    return TextDisplay(env.stdout)


def _hooks(*displays: Display) -> CopyHooks:
    """Return engine hooks that tell every display about every event."""
    from orascp.engine import CopyHooks

    def fan_out(name: str) -> Callable[[Descriptor], None]:
        methods = [getattr(display, name) for display in displays]

        def call(desc: Descriptor) -> None:
            for method in methods:
                method(desc)

        return call

    progress = [d.on_progress for d in displays if d.wants_progress]
    return CopyHooks(
        pre_copy=fan_out("pre_copy"),
        post_copy=fan_out("post_copy"),
        on_copy_skipped=fan_out("on_copy_skipped"),
        on_mounted=fan_out("on_mounted"),
        on_deduplicated=fan_out("on_deduplicated"),
        # Called per chunk read: only wired when a display draws bytes.
        on_progress=progress[0] if len(progress) == 1 else None,
    )


def _trace_writer(env: Environment) -> Callable[[str], None]:
    def write(block: str) -> None:
        env.stderr.write(block)
        env.stderr.flush()

    return write


async def _run(request: CopyRequest, env: Environment, recorder: Recorder) -> Descriptor:
    from orascp.engine import CopyOptions, copy
    from orascp.targets import open_targets

    display = _display(request, env)
    display.start()
    try:
        async with open_targets(
            request.source,
            request.destination,
            concurrency=request.concurrency,
            trace=_trace_writer(env) if request.debug else None,
        ) as targets:
            mount_source = targets.mount_source if request.mount else None
            options = CopyOptions(
                concurrency=request.concurrency,
                force=request.force,
                referrers=request.recursive,
                platforms=request.platforms,
                mount_from=(lambda _desc: [mount_source]) if mount_source else None,
                hooks=_hooks(recorder, display),
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
    finally:
        display.stop()
    return result.root


def _run_with_signals(request: CopyRequest, env: Environment, recorder: Recorder) -> Descriptor:
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
            return await _run(request, env, recorder)
        except asyncio.CancelledError:
            if terminated:
                raise _Terminated() from None
            raise

    return asyncio.run(main())


def _side_json(side: Side) -> dict[str, str]:
    kind = "registry" if isinstance(side, RegistrySide) else "oci-layout"
    return {"type": kind, "reference": side.raw}


class _Terminated(Exception):
    """Signal that SIGTERM stopped the copy."""


def run_copy(request: CopyRequest, env: Environment) -> ExitStatus:
    """Copy, print the summary and return the exit status."""
    recorder = Recorder()
    try:
        root = _run_with_signals(request, env, recorder)
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
    if request.output == "json":
        out.write(
            result_document(
                source=_side_json(request.source),
                destination=_side_json(request.destination),
                root=root,
                tags=list(request.tags),
                recorder=recorder,
            )
        )
        out.flush()
        return ExitStatus.OK
    # The destination is shown with its first tag only, as oras does.
    out.write(f"Copied {describe(request.source)} => {describe(request.destination)}\n")
    for tag in request.tags[1:]:
        out.write(f"Tagged {tag}\n")
    out.write(f"Digest: {root.digest}\n")
    out.flush()
    return ExitStatus.OK


SOURCE_HELP = (
    "What to copy: <registry>/<repo>{:<tag>|@<digest>}, or a layout path with --from-oci-layout."
)
DESTINATION_HELP = (
    "Where to copy it: <registry>/<repo>[:<tag>[,<tag>...]], or a layout path with --to-oci-layout."
)
_SIDE_HELP = {
    "oci-layout": "The {side} is an OCI image layout directory.",
    "plain-http": "Speak plain HTTP to the {side} registry (loopback hosts without TLS options"
    " do by default).",
    "username": "{Side} registry user name.",
    "password": "{Side} registry password (visible to other users: prefer --{prefix}-password"
    "-stdin).",
    "password-stdin": "Read the {side} registry password from standard input.",
    "identity-token": "{Side} registry identity token (OAuth2 refresh token).",
    "registry-config": "Docker config file with {side} credentials (repeatable; tried in"
    " order before ~/.docker/config.json).",
    "ca-file": "CA certificate(s) that sign the {side} registry's certificate (implies HTTPS).",
    "insecure": "Do not verify the {side} registry's TLS certificate (implies HTTPS).",
    "cert-file": "Client certificate for the {side} registry (with --{prefix}-key-file).",
    "key-file": "Private key of --{prefix}-cert-file.",
    "header": "Extra header 'Name: value' for the {side} registry (repeatable; never sent to"
    " redirects elsewhere).",
    "distribution-spec": "How the {side} registry lists referrers: v1.1-referrers-api or"
    " v1.1-referrers-tag (default: the API if it answers, else the tag schema).",
}


def side_option(prefix: str, name: str) -> typer.models.OptionInfo:
    """Return the typer option ``--<prefix>-<name>`` with its help text."""
    side = "source" if prefix == "from" else "destination"
    text = _SIDE_HELP[name].format(side=side, Side=side.capitalize(), prefix=prefix)
    option: typer.models.OptionInfo = typer.Option(
        f"--{prefix}-{name}", help=text, show_default=False
    )
    return option


def register(app: typer.Typer) -> None:
    """Add the ``cp`` command (and its alias ``copy``) to ``app``."""

    def cp(
        source: Annotated[
            str, typer.Argument(help=SOURCE_HELP, show_default=False, metavar="SOURCE")
        ],
        destination: Annotated[
            str, typer.Argument(help=DESTINATION_HELP, show_default=False, metavar="DESTINATION")
        ],
        from_oci_layout: Annotated[bool, side_option("from", "oci-layout")] = False,
        to_oci_layout: Annotated[bool, side_option("to", "oci-layout")] = False,
        from_plain_http: Annotated[bool, side_option("from", "plain-http")] = False,
        to_plain_http: Annotated[bool, side_option("to", "plain-http")] = False,
        from_username: Annotated[str | None, side_option("from", "username")] = None,
        to_username: Annotated[str | None, side_option("to", "username")] = None,
        from_password: Annotated[str | None, side_option("from", "password")] = None,
        to_password: Annotated[str | None, side_option("to", "password")] = None,
        from_password_stdin: Annotated[bool, side_option("from", "password-stdin")] = False,
        to_password_stdin: Annotated[bool, side_option("to", "password-stdin")] = False,
        from_identity_token: Annotated[str | None, side_option("from", "identity-token")] = None,
        to_identity_token: Annotated[str | None, side_option("to", "identity-token")] = None,
        from_registry_config: Annotated[
            list[str] | None, side_option("from", "registry-config")
        ] = None,
        to_registry_config: Annotated[
            list[str] | None, side_option("to", "registry-config")
        ] = None,
        from_ca_file: Annotated[str | None, side_option("from", "ca-file")] = None,
        to_ca_file: Annotated[str | None, side_option("to", "ca-file")] = None,
        from_insecure: Annotated[bool, side_option("from", "insecure")] = False,
        to_insecure: Annotated[bool, side_option("to", "insecure")] = False,
        from_cert_file: Annotated[str | None, side_option("from", "cert-file")] = None,
        to_cert_file: Annotated[str | None, side_option("to", "cert-file")] = None,
        from_key_file: Annotated[str | None, side_option("from", "key-file")] = None,
        to_key_file: Annotated[str | None, side_option("to", "key-file")] = None,
        from_header: Annotated[list[str] | None, side_option("from", "header")] = None,
        to_header: Annotated[list[str] | None, side_option("to", "header")] = None,
        from_distribution_spec: Annotated[
            str | None, side_option("from", "distribution-spec")
        ] = None,
        to_distribution_spec: Annotated[str | None, side_option("to", "distribution-spec")] = None,
        recursive: Annotated[
            bool,
            typer.Option(
                "-r",
                "--recursive",
                help="Also copy the referrers (signatures, SBOMs, attestations) of the artifact,"
                " of an index's manifests, and theirs, transitively.",
            ),
        ] = False,
        platform: Annotated[
            list[str] | None,
            typer.Option(
                "--platform",
                metavar="os/arch[/variant][:os_version]",
                help="Copy only this platform of an image index. Repeat it (oras cannot) to copy"
                " several: a new index listing only those is written, and its digest printed.",
            ),
        ] = None,
        concurrency: Annotated[
            int, typer.Option("--concurrency", min=1, help="Transfers in flight at once.")
        ] = 3,
        no_mount: Annotated[
            bool,
            typer.Option(
                "--no-mount", help="Never mount blobs across repositories; always copy the bytes."
            ),
        ] = False,
        output: Annotated[
            str,
            typer.Option(
                "--format",
                metavar="text|json",
                help="text: status lines (a live display on a terminal); json: one JSON document"
                " on stdout at the end (schema in the README).",
            ),
        ] = "text",
        no_tty: Annotated[
            bool,
            typer.Option("--no-tty", help="No live progress display, even on a terminal."),
        ] = False,
        debug: Annotated[
            bool,
            typer.Option(
                "-d",
                "--debug",
                help="Trace every HTTP request and response on stderr, secrets redacted"
                " (implies --no-tty).",
            ),
        ] = False,
        force: Annotated[
            bool,
            typer.Option(
                "--force",
                help="Re-push every manifest instead of trusting that the destination holds it"
                " (mends destinations that claim content they lack, e.g. pull-through caches).",
            ),
        ] = False,
    ) -> None:
        env = Environment()
        sides = {
            prefix: SideFlags(
                prefix,
                oci_layout=values[0],
                plain_http=values[1],
                username=values[2],
                password=values[3],
                password_stdin=values[4],
                identity_token=values[5],
                registry_config=values[6] or [],
                ca_file=values[7],
                insecure=values[8],
                cert_file=values[9],
                key_file=values[10],
                headers=values[11] or [],
                distribution_spec=values[12],
            )
            for prefix, values in (
                (
                    "from",
                    (
                        from_oci_layout,
                        from_plain_http,
                        from_username,
                        from_password,
                        from_password_stdin,
                        from_identity_token,
                        from_registry_config,
                        from_ca_file,
                        from_insecure,
                        from_cert_file,
                        from_key_file,
                        from_header,
                        from_distribution_spec,
                    ),
                ),
                (
                    "to",
                    (
                        to_oci_layout,
                        to_plain_http,
                        to_username,
                        to_password,
                        to_password_stdin,
                        to_identity_token,
                        to_registry_config,
                        to_ca_file,
                        to_insecure,
                        to_cert_file,
                        to_key_file,
                        to_header,
                        to_distribution_spec,
                    ),
                ),
            )
        }
        try:
            request = parse_request(
                source,
                destination,
                sides["from"],
                sides["to"],
                env=env,
                concurrency=concurrency,
                mount=not no_mount,
                force=force,
                output=output,
                tty=not no_tty,
                debug=debug,
                recursive=recursive,
                platforms=platform or [],
            )
        except OrascpError as exc:
            env.fail(exc)
        sys.exit(run_copy(request, env))

    doc = (
        "Copy an artifact and everything it references (an image index copies whole)"
        " from SOURCE to DESTINATION.\n\n"
        "Blobs are mounted when both sides are repositories of the same registry.\n" + EXAMPLES
    )
    cp.__doc__ = doc
    app.command("cp", help=doc)(cp)
    app.command("copy", help=doc, hidden=True)(cp)
