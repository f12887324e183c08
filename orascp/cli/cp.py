"""The ``cp`` command: its flags and help; parsing is in ``request``, running in ``run``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orascp.cli.env import Environment
from orascp.cli.options import SideFlags
from orascp.cli.request import parse_request
from orascp.cli.run import run_copy
from orascp.errors import OrascpError

__all__ = ["register"]

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
        mount_from: Annotated[
            list[str] | None,
            typer.Option(
                "--mount-from",
                metavar="REPOSITORY",
                help="Try mounting blobs from this repository of the destination registry first"
                " (repeatable).",
            ),
        ] = None,
        blob_cache: Annotated[
            str | None,
            typer.Option(
                "--blob-cache",
                metavar="PATH",
                help="Blob-location cache file (default:"
                " $XDG_CACHE_HOME/orascp/blob-locations.sqlite).",
            ),
        ] = None,
        no_blob_cache: Annotated[
            bool,
            typer.Option(
                "--no-blob-cache",
                help="Neither read nor update the blob-location cache.",
            ),
        ] = False,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Print what would be copied, mounted or skipped, and the bytes that would"
                " move; write nothing.",
            ),
        ] = False,
        all_tags: Annotated[
            bool,
            typer.Option(
                "--all-tags",
                help="Copy every tag of the SOURCE repository to the same tags of DESTINATION.",
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
                mount_from=mount_from or [],
                blob_cache=blob_cache,
                use_blob_cache=not no_blob_cache,
                dry_run=dry_run,
                all_tags=all_tags,
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
