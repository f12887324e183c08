"""Run a validated ``cp`` request: wire the displays, the blob-location cache and the engine,
then print the result (status lines, a plan, per-tag lines, or one JSON document).

Which display runs (README "Output"): ``--format json`` shows nothing until the document;
``-d`` prints plain status lines and the HTTP trace; a terminal on stderr (no ``--no-tty``, TERM
not ``dumb``) gets the live display; anything else gets ``oras``'s plain status lines on stdout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orascp.cli.env import Environment
from orascp.cli.request import CopyRequest
from orascp.descriptor import Descriptor
from orascp.display.record import Recorder, plan_document, result_document, tags_document
from orascp.display.text import Display, NullDisplay, TextDisplay, format_size, short_digest
from orascp.errors import (
    AuthenticationError,
    CopyError,
    ExitStatus,
    NotFoundError,
    OrascpError,
    Origin,
    TLSError,
    quote,
)
from orascp.locations import BlobLocations
from orascp.targets import RegistrySide, Side, describe

if TYPE_CHECKING:
    from orascp.engine import CopyHooks, CopyOptions, PlanStep, TagResult
    from orascp.targets import OpenTargets

__all__ = ["run_copy"]


# -- errors ---------------------------------------------------------------------------------


def error_text(exc: OrascpError, request: CopyRequest) -> tuple[str, str | None]:
    """Return the ``Error:`` message and the ``Hint:`` for ``exc``, naming the side at fault."""
    if not isinstance(exc, CopyError):
        return str(exc), exc.hint
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
    elif hint and "--from-plain-http or --to-plain-http" in hint:
        hint = hint.replace("--from-plain-http or --to-plain-http", f"{flag}-plain-http")
    elif hint is None and isinstance(cause, NotFoundError) and exc.origin is Origin.SOURCE:
        hint = (
            "check the reference: the tag or digest does not exist in that repository"
            if isinstance(side, RegistrySide)
            else "check the layout directory and the tag or digest in it"
        )
    return message, hint


# -- wiring ---------------------------------------------------------------------------------


def _display(request: CopyRequest, env: Environment) -> Display:
    """Pick what the user sees while the copy runs."""
    if request.output == "json" or request.dry_run:
        return NullDisplay()
    term = os.environ.get("TERM", "")
    if request.tty and not request.debug and term != "dumb" and env.stderr.isatty():
        # Imported only here: rich's rendering modules cost tens of milliseconds to load.
        from rich.console import Console

        from orascp.display.tty import ProgressDisplay

        return ProgressDisplay(Console(file=env.stderr, highlight=False))
    return TextDisplay(env.stdout)


def _hooks(*displays: Display | BlobLocations) -> CopyHooks:
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


def _locations(request: CopyRequest, targets: OpenTargets) -> BlobLocations:
    """Build the mount candidates and cache recorder for this copy."""
    src, dst = request.source, request.destination
    cache = None
    if request.use_blob_cache and RegistrySide in (type(src), type(dst)):
        from orascp.blobcache import BlobCache, default_path

        cache = BlobCache(Path(request.blob_cache) if request.blob_cache else default_path())
    return BlobLocations(
        cache,
        destination=(
            (dst.reference.registry, dst.reference.repository)
            if isinstance(dst, RegistrySide)
            else None
        ),
        source=(
            (src.reference.registry, src.reference.repository)
            if isinstance(src, RegistrySide)
            else None
        ),
        explicit=request.mount_from,
        source_mountable=targets.mount_source is not None,
    )


def _options(request: CopyRequest, hooks: CopyHooks, locations: BlobLocations) -> CopyOptions:
    from orascp.engine import CopyOptions

    mounting = request.mount and isinstance(request.destination, RegistrySide)
    return CopyOptions(
        concurrency=request.concurrency,
        force=request.force,
        referrers=request.recursive,
        platforms=request.platforms,
        mount_from=locations.candidates if mounting else None,
        on_mount_missed=locations.missed,
        hooks=hooks,
    )


# -- the three runs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Copied:
    root: Descriptor


@dataclass(frozen=True, slots=True)
class _Planned:
    root: Descriptor
    steps: list[PlanStep]


@dataclass(frozen=True, slots=True)
class _TagsCopied:
    results: list[TagResult]


_Outcome = _Copied | _Planned | _TagsCopied


async def _run(request: CopyRequest, env: Environment, recorder: Recorder) -> _Outcome:
    from orascp.engine import copy, plan
    from orascp.targets import open_targets

    display = _display(request, env)
    display.start()
    locations: BlobLocations | None = None
    try:
        async with open_targets(
            request.source,
            request.destination,
            concurrency=request.concurrency,
            trace=_trace_writer(env) if request.debug else None,
            mount_from=request.mount_from,
        ) as targets:
            locations = _locations(request, targets)
            options = _options(request, _hooks(recorder, display, locations), locations)
            reference = request.source.reference.reference
            if request.all_tags:
                return _TagsCopied(await _copy_all(targets, options))
            assert reference is not None  # parse_request refuses a source without one
            if request.dry_run:
                root, steps = await plan(
                    targets.source,
                    reference,
                    targets.destination,
                    options,
                    expected_digest=request.expected_digest,
                )
                return _Planned(root, steps)
            result = await copy(
                targets.source,
                reference,
                targets.destination,
                request.tags,
                options,
                expected_digest=request.expected_digest,
            )
            return _Copied(result.root)
    finally:
        display.stop()
        if locations is not None and locations.cache is not None:
            locations.cache.close()


async def _copy_all(targets: OpenTargets, options: CopyOptions) -> list[TagResult]:
    from orascp.content import TagLister
    from orascp.engine import copy_tags
    from orascp.errors import UnsupportedError

    source = targets.source
    if not isinstance(source, TagLister):
        raise CopyError("tags", Origin.SOURCE, UnsupportedError("the source cannot list tags"))
    try:
        tags = await source.tags()
    except OrascpError as exc:
        raise CopyError("tags", Origin.SOURCE, exc) from exc
    if not tags:
        raise CopyError("tags", Origin.SOURCE, NotFoundError("the source has no tags to copy"))
    return await copy_tags(source, targets.destination, tags, options)


def _run_with_signals(request: CopyRequest, env: Environment, recorder: Recorder) -> _Outcome:
    """Run the copy; SIGTERM cancels it like Ctrl-C does, so cleanup code runs either way."""
    import asyncio  # not at the top: --help does not need it
    import signal

    async def main() -> _Outcome:
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


class _Terminated(Exception):
    """Signal that SIGTERM stopped the copy."""


# -- results --------------------------------------------------------------------------------


def _side_json(side: Side) -> dict[str, str]:
    kind = "registry" if isinstance(side, RegistrySide) else "oci-layout"
    return {"type": kind, "reference": side.raw}


def _print_copied(request: CopyRequest, env: Environment, root: Descriptor, rec: Recorder) -> None:
    out = env.stdout
    if request.output == "json":
        out.write(
            result_document(
                source=_side_json(request.source),
                destination=_side_json(request.destination),
                root=root,
                tags=list(request.tags),
                recorder=rec,
            )
        )
        return
    # The destination is shown with its first tag only, as oras does.
    out.write(f"Copied {describe(request.source)} => {describe(request.destination)}\n")
    for tag in request.tags[1:]:
        out.write(f"Tagged {tag}\n")
    out.write(f"Digest: {root.digest}\n")


def _print_plan(request: CopyRequest, env: Environment, planned: _Planned) -> None:
    out = env.stdout
    rows = [(s.desc, s.action, s.mount_from) for s in planned.steps]
    if request.output == "json":
        out.write(
            plan_document(
                source=_side_json(request.source),
                destination=_side_json(request.destination),
                root=planned.root,
                tags=list(request.tags),
                steps=rows,
            )
        )
        return
    out.write(
        f"Dry run: {describe(request.source)} => {describe(request.destination)};"
        " nothing is written\n"
    )
    moved = 0
    counts = {"copy": 0, "mount": 0, "exists": 0}
    for desc, action, source in rows:
        name = desc.title or desc.media_type
        detail = f"from {source}" if source else format_size(desc.size) if action == "copy" else ""
        out.write(f"{action:<7} {short_digest(desc)} {name}{'  ' + detail if detail else ''}\n")
        counts[action] += 1
        moved += desc.size if action == "copy" else 0
    out.write(
        f"Would copy {counts['copy']} ({format_size(moved)}), mount {counts['mount']},"
        f" skip {counts['exists']} that exist\n"
    )
    out.write(f"Digest: {planned.root.digest}\n")


def _print_tags(
    request: CopyRequest, env: Environment, results: list[TagResult], rec: Recorder
) -> ExitStatus:
    failed = [r for r in results if r.error is not None]
    for result in failed:
        assert result.error is not None
        message, hint = error_text(result.error, request)
        env.error(f"tag {result.tag}: {message}", hint)
    out = env.stdout
    if request.output == "json":
        out.write(
            tags_document(
                source=_side_json(request.source),
                destination=_side_json(request.destination),
                results=[
                    (r.tag, r.root, error_text(r.error, request)[0] if r.error else None)
                    for r in results
                ],
                recorder=rec,
            )
        )
    else:
        src, dst = describe(request.source), describe(request.destination)
        for result in results:
            if result.root is not None:
                out.write(f"Copied {src}:{result.tag} => {dst}:{result.tag} {result.root.digest}\n")
        out.write(f"Copied {len(results) - len(failed)} of {len(results)} tags\n")
    return ExitStatus.ERROR if failed else ExitStatus.OK


def run_copy(request: CopyRequest, env: Environment) -> ExitStatus:
    """Copy (or plan), print the result and return the exit status."""
    recorder = Recorder()
    try:
        outcome = _run_with_signals(request, env, recorder)
    except OrascpError as exc:
        env.error(*error_text(exc, request))
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        env.error("interrupted; run the same command again to finish the copy")
        return ExitStatus.INTERRUPTED
    except _Terminated:
        env.error("terminated; run the same command again to finish the copy")
        return ExitStatus.TERMINATED
    status = ExitStatus.OK
    if isinstance(outcome, _Copied):
        _print_copied(request, env, outcome.root, recorder)
    elif isinstance(outcome, _Planned):
        _print_plan(request, env, outcome)
    else:
        status = _print_tags(request, env, outcome.results, recorder)
    env.stdout.flush()
    return status
