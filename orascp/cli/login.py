"""The ``login`` and ``logout`` commands, compatible with ``docker login`` and ``oras login``."""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass
from typing import Annotated

import typer

from orascp.cli.env import Environment
from orascp.cli.options import read_secret
from orascp.errors import ExitStatus, OrascpError, UsageError
from orascp.reference import RegistryReference, parse_registry_reference
from orascp.registry.credentials import Credential, CredentialStore

__all__ = ["register"]


def _check_registry(registry: str) -> RegistryReference:
    """Check a registry host with the reference grammar (given a placeholder repository)."""
    return parse_registry_reference(f"{registry}/login-check")


@dataclass(frozen=True, slots=True)
class TLSFlags:
    """Hold the connection flags of ``login``."""

    plain_http: bool | None = None
    ca_file: str | None = None
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None


def run_login(
    registry: str,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    identity_token: str | None,
    registry_config: list[str],
    tls: TLSFlags,
    env: Environment,
) -> ExitStatus:
    """Verify credentials against the registry, then store them; return the exit status."""
    import asyncio

    from orascp.targets import RegistrySide, check_login

    if password is not None and password_stdin:
        raise UsageError("--password and --password-stdin cannot be used together")
    if password is not None:
        env.warn(
            "a password given with --password is visible to other users; use"
            " --password-stdin instead"
        )
    if identity_token:
        credential = Credential(identity_token=identity_token, source="command line")
    else:
        if not username:
            if password_stdin or not sys.stdin.isatty():
                raise UsageError("--username is required (or --identity-token)")
            username = input("Username: ")
        if password_stdin:
            password = read_secret(sys.stdin)
        elif password is None:
            if not sys.stdin.isatty():
                raise UsageError("no password: use --password-stdin to read it from a pipe")
            password = getpass.getpass("Password: ")
        credential = Credential(username=username, password=password, source="command line")
    side = RegistrySide(
        _check_registry(registry),
        registry,
        plain_http=tls.plain_http,
        credential=credential,
        ca_file=tls.ca_file,
        insecure=tls.insecure,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
    )
    asyncio.run(check_login(side))
    where = CredentialStore(registry_config).store(registry, credential)
    env.stdout.write(f"Login Succeeded (credentials stored in {where})\n")
    return ExitStatus.OK


def register(app: typer.Typer) -> None:
    """Add ``login`` and ``logout`` to ``app``."""

    @app.command("login")
    def login(
        registry: Annotated[str, typer.Argument(help="Registry host, e.g. localhost:5000.")],
        username: Annotated[
            str | None, typer.Option("--username", "-u", help="User name.", show_default=False)
        ] = None,
        password: Annotated[
            str | None,
            typer.Option(
                "--password", "-p", help="Password (prefer --password-stdin).", show_default=False
            ),
        ] = None,
        password_stdin: Annotated[
            bool, typer.Option("--password-stdin", help="Read the password from standard input.")
        ] = False,
        identity_token: Annotated[
            str | None,
            typer.Option(
                "--identity-token", help="OAuth2 identity (refresh) token.", show_default=False
            ),
        ] = None,
        registry_config: Annotated[
            list[str] | None,
            typer.Option(
                "--registry-config",
                help="Config file to store the credentials in (default: ~/.docker/config.json).",
                show_default=False,
            ),
        ] = None,
        plain_http: Annotated[bool, typer.Option("--plain-http", help="Speak plain HTTP.")] = False,
        ca_file: Annotated[
            str | None,
            typer.Option("--ca-file", help="CA certificate of the registry.", show_default=False),
        ] = None,
        insecure: Annotated[
            bool, typer.Option("--insecure", help="Do not verify the TLS certificate.")
        ] = False,
        cert_file: Annotated[
            str | None, typer.Option("--cert-file", help="Client certificate.", show_default=False)
        ] = None,
        key_file: Annotated[
            str | None, typer.Option("--key-file", help="Client key.", show_default=False)
        ] = None,
    ) -> None:
        """Log in to a registry: check the credentials, then store them as docker does.

        They go to the config's credsStore or credHelpers entry when it has one, else into its auths section (file mode 0600, every other key kept).
        """  # noqa: E501 - typer shows docstring lines as they are written
        env = Environment()
        tls = TLSFlags(True if plain_http else None, ca_file, insecure, cert_file, key_file)
        try:
            status = run_login(
                registry,
                username,
                password,
                password_stdin,
                identity_token,
                registry_config or [],
                tls,
                env,
            )
        except OrascpError as exc:
            env.fail(exc, f"login to {registry} failed: ")
        sys.exit(status)

    @app.command("logout")
    def logout(
        registry: Annotated[str, typer.Argument(help="Registry host, e.g. localhost:5000.")],
        registry_config: Annotated[
            list[str] | None,
            typer.Option(
                "--registry-config",
                help="Config file to remove the credentials from (default: ~/.docker/config.json).",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        """Remove the stored credentials of a registry."""
        env = Environment()
        try:
            _check_registry(registry)
            removed = CredentialStore(registry_config or []).erase(registry)
        except OrascpError as exc:
            env.fail(exc)
        if removed:
            env.stdout.write(f"Removed login credentials for {registry}\n")
        else:
            env.stdout.write(f"Not logged in to {registry}\n")
        sys.exit(ExitStatus.OK)
