"""Validate a ``cp`` invocation into a :class:`CopyRequest`, before anything is read or written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from orascp.cli.env import Environment
from orascp.cli.options import SideFlags, resolve_side
from orascp.errors import InvalidReferenceError, UsageError, quote
from orascp.platform import Platform, parse_platform
from orascp.reference import (
    parse_layout_reference,
    parse_registry_reference,
    split_tags,
    validate_repository,
)
from orascp.targets import RegistrySide, Side

__all__ = ["CopyRequest", "parse_request"]


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
    mount_from: tuple[str, ...] = ()
    blob_cache: str | None = None  # a path; None: the default under $XDG_CACHE_HOME
    use_blob_cache: bool = True
    dry_run: bool = False
    all_tags: bool = False


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
    mount_from: Sequence[str] = (),
    blob_cache: str | None = None,
    use_blob_cache: bool = True,
    dry_run: bool = False,
    all_tags: bool = False,
) -> CopyRequest:
    """Validate every reference and flag before anything touches the network or the disk."""
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    if output not in ("text", "json"):
        raise UsageError(f"--format must be text or json, got {quote(output)}")
    if blob_cache is not None and not use_blob_cache:
        raise UsageError("--blob-cache and --no-blob-cache cannot be used together")
    if blob_cache == "":
        raise UsageError("--blob-cache needs a file path")
    wanted = tuple(parse_platform(p) for p in platforms)
    for repository in mount_from:
        validate_repository(repository, what="--mount-from repository")
    if mount_from and dst_flags.oci_layout:
        raise UsageError("--mount-from needs a registry destination; an OCI layout cannot mount")
    if mount_from and not mount:
        raise UsageError("--mount-from and --no-mount cannot be used together")
    if src_flags.password_stdin and dst_flags.password_stdin:
        raise UsageError(
            "--from-password-stdin and --to-password-stdin cannot both read standard input"
        )
    first, extra = split_tags(destination)
    # Both references are checked before any credential is looked up.
    src_ref = (
        parse_layout_reference(source) if src_flags.oci_layout else parse_registry_reference(source)
    )
    ref = parse_layout_reference(first) if dst_flags.oci_layout else parse_registry_reference(first)
    if all_tags:
        if src_ref.reference is not None or ref.tag or ref.digest or extra:
            raise InvalidReferenceError(
                "--all-tags copies whole repositories: give SOURCE and DESTINATION without a tag"
                " or digest",
                hint="e.g. orascp cp --all-tags localhost:5000/app localhost:5000/mirror/app",
            )
        if wanted:
            raise UsageError("--all-tags and --platform cannot be used together")
        if dry_run:
            raise UsageError("--all-tags and --dry-run cannot be used together yet")
    if ref.tag and ref.digest:
        raise InvalidReferenceError(
            f"destination {quote(first)} has both a tag and a digest; give one of them"
        )
    if ref.digest and extra:
        raise InvalidReferenceError(
            f"destination {quote(destination)} is a digest; extra tags need a tag destination"
        )
    src = resolve_side(source, src_flags, env)
    if src.reference.reference is None and not all_tags:
        raise InvalidReferenceError(
            f"source {quote(source)} has no tag or digest",
            hint='name what to copy, as "<name>:<tag>" or "<name>@<digest>", or pass --all-tags',
        )
    dst = resolve_side(first, dst_flags, env)
    if mount_from and isinstance(dst, RegistrySide) and dst.reference.repository in mount_from:
        raise UsageError(
            f"--mount-from {dst.reference.repository} is the destination repository itself"
        )
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
        mount_from=tuple(dict.fromkeys(mount_from)),
        blob_cache=blob_cache,
        use_blob_cache=use_blob_cache,
        dry_run=dry_run,
        all_tags=all_tags,
    )
