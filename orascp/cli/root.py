"""Declare the typer application: global options and the commands."""

from __future__ import annotations

from typing import Annotated

import typer

from orascp.cli import completion, cp, login
from orascp.cli.app import print_version

__all__ = ["app"]

app = typer.Typer(
    name="orascp",
    help="Copy OCI artifacts between registries and OCI image layouts, mounting blobs across"
    " repositories of the same registry instead of moving their bytes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's markdown and table modules cost ~50 ms on every --help.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        print_version()
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Copy OCI artifacts between registries and OCI image layouts."""


completion.enable()
cp.register(app)
login.register(app)
