"""Render the shell completion scripts kept in ``completions/``: bash, zsh and fish.

The scripts are typer's, with two repairs (below). Each one only calls ``orascp`` back with
``_ORASCP_COMPLETE`` set, and the running command answers with the candidates, so a new command or
option completes without touching them. They change only when typer changes its script text;
regenerate them with ``python -m orascp.cli.completion completions``.
``tests/unit/test_completions.py`` fails while the committed files differ from what this module
renders.

typer answers those calls only for the shells it has registered, and it registers them only for
an app built with ``add_completion=True`` (which also adds ``--install-completion`` and
``--show-completion``): an app built without calls :func:`enable` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer._completion_classes import completion_init
from typer._completion_shared import get_completion_script

__all__ = ["COMPLETE_VAR", "PROG_NAME", "SHELLS", "enable", "main", "script"]

PROG_NAME = "orascp"
COMPLETE_VAR = "_ORASCP_COMPLETE"

SHELLS = {"bash": "orascp.bash", "zsh": "_orascp", "fish": "orascp.fish"}
"""The file name of each shell's script, as that shell looks it up."""

# fish reads one candidate per line, "value<TAB>description", but typer renders each description
# with rich, which wraps it at the terminal width (80 columns in a pipe): the description is cut
# short and its continuation becomes a candidate of its own. A wide COLUMNS keeps it on one line.
_FISH_ENV = ("env _ORASCP_COMPLETE=", "env COLUMNS=10000 _ORASCP_COMPLETE=")

# zsh autoloads a ``#compdef`` file on $fpath as the body of the function ``_orascp``: run on the
# first Tab, typer's script only defines its completer and registers it with ``compdef``, so that
# Tab lists nothing. Calling the completer when the file runs as ``_orascp`` answers the first Tab
# too; a ``source``d file is not run as ``_orascp`` and only registers, as before.
_ZSH_AUTOLOAD = '[[ ${funcstack[1]} == _orascp ]] && _orascp_completion "$@"'

_USAGE = "usage: python -m orascp.cli.completion [DIR]  (DIR defaults to ./completions)\n"


def enable() -> None:
    """Register typer's bash, zsh and fish completers so that ``orascp`` answers the scripts."""
    completion_init()


def script(shell: str) -> str:
    """Return the completion script for ``shell`` (a key of :data:`SHELLS`), newline-terminated.

    Raises ``ValueError`` for any other shell.
    """
    if shell not in SHELLS:
        raise ValueError(f"no completion script for {shell!r}: choose one of {', '.join(SHELLS)}")
    text = get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell)
    if shell == "fish":
        old, new = _FISH_ENV
        if old not in text:
            raise RuntimeError(f"typer's fish script no longer runs {old!r}: revisit _FISH_ENV")
        text = text.replace(old, new)
    elif shell == "zsh":
        text += "\n" + _ZSH_AUTOLOAD
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write every shell's script into DIR (default ``./completions``) and return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in {"-h", "--help"}:
        sys.stdout.write(_USAGE)
        return 0
    if len(args) > 1:
        sys.stderr.write(_USAGE)
        return 2
    directory = Path(args[0] if args else "completions")
    directory.mkdir(parents=True, exist_ok=True)
    for shell, name in SHELLS.items():
        path = directory / name
        path.write_text(script(shell), encoding="utf-8", newline="\n")
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
