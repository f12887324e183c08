"""The committed shell completion scripts are current, and ``orascp`` answers what they ask.

bash runs its script for real. zsh and fish need not be installed: their tests take each
``env VAR=value ... orascp`` call out of the committed script and run it the way the shell would,
with the words typed so far in place of the shell's expression for them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orascp.cli import completion

REPO = Path(__file__).resolve().parents[2]
COMPLETIONS = REPO / "completions"
REGENERATE = "python -m orascp.cli.completion completions"

# An ``env`` call in a script: assignments, then the command. A value is a word, a double-quoted
# string or a fish command substitution ``(...)``.
ENV_CALL = re.compile(r"\benv((?:\s+\w+=(?:\"[^\"]*\"|\([^)]*\)|[^\s\"()]+))+)\s+orascp\b")
ASSIGNMENT = re.compile(r"(\w+)=(\"[^\"]*\"|\([^)]*\)|[^\s\"()]+)")
LITERAL = re.compile(r"[\w.-]+")

# The cases every shell must complete: words typed so far, candidates that must all be offered.
CASES = [
    ("orascp cp --from-pl", {"--from-plain-http"}),
    ("orascp lo", {"login", "logout"}),
]


def committed(shell: str) -> str:
    return (COMPLETIONS / completion.SHELLS[shell]).read_text(encoding="utf-8")


def orascp_script() -> str:
    """Return the ``orascp`` console script: ``python -m orascp`` would not call itself orascp."""
    script = shutil.which("orascp", path=os.path.dirname(sys.executable))
    assert script, f"no orascp console script beside {sys.executable}: pip install -e ."
    return script


def clean_env(**extra: str) -> dict[str, str]:
    """Return this environment without completion variables, the console script's dir first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("_TYPER_COMPLETE", "COMP_")) and k != completion.COMPLETE_VAR
    }
    env["PATH"] = os.pathsep.join([os.path.dirname(orascp_script()), env.get("PATH", "")])
    env.update(extra)
    return env


def callbacks(text: str, typed: str) -> list[dict[str, str]]:
    """Return the environment of each ``env ... orascp`` call in ``text``, as run after ``typed``.

    A value that is not a plain word is the shell's expression for the words typed so far.
    """
    calls = []
    for match in ENV_CALL.finditer(text):
        env = {}
        for name, value in ASSIGNMENT.findall(match.group(1)):
            env[name] = value if LITERAL.fullmatch(value) else typed
        calls.append(env)
    return calls


def run_callback(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``orascp`` as a completion script does; fail unless it answered without complaint."""
    result = subprocess.run(
        [orascp_script()],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stderr == "", hint(result.stderr)
    return result


def hint(stderr: str) -> str:
    """Return ``stderr``, and what to do when ``orascp`` knows no completion shell at all."""
    if "not supported" in stderr:
        return f"{stderr}(the app is built with add_completion=False: call completion.enable())"
    return stderr


# -- the committed files ---------------------------------------------------------------------


@pytest.mark.parametrize("shell", sorted(completion.SHELLS))
def test_committed_script_is_current(shell: str) -> None:
    path = COMPLETIONS / completion.SHELLS[shell]
    assert path.is_file(), f"{path.relative_to(REPO)} is missing: run `{REGENERATE}`"
    assert committed(shell) == completion.script(shell), (
        f"{path.relative_to(REPO)} is stale: run `{REGENERATE}` and commit the result"
    )


def test_main_writes_every_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "dir"
    assert completion.main([str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(completion.SHELLS.values())
    for shell, name in completion.SHELLS.items():
        assert (out / name).read_bytes() == completion.script(shell).encode()
    assert capsys.readouterr().out.splitlines() == [
        str(out / name) for name in completion.SHELLS.values()
    ]


def test_main_defaults_to_completions_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert completion.main([]) == 0
    assert sorted(p.name for p in (tmp_path / "completions").iterdir()) == sorted(
        completion.SHELLS.values()
    )


def test_main_refuses_extra_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert completion.main(["a", "b"]) == 2
    assert capsys.readouterr().err.startswith("usage: ")


def test_script_refuses_an_unknown_shell() -> None:
    with pytest.raises(ValueError, match="powershell"):
        completion.script("powershell")


@pytest.mark.parametrize("shell", sorted(completion.SHELLS))
def test_script_calls_orascp_back(shell: str) -> None:
    text = completion.script(shell)
    assert text.endswith("\n")
    assert not text.endswith("\n\n")
    assert f"{completion.COMPLETE_VAR}=complete_{shell}" in text


def test_zsh_script_is_a_compdef_file() -> None:
    # compinit reads the first line of each file on $fpath; the last line completes the first Tab.
    lines = completion.script("zsh").splitlines()
    assert lines[0] == "#compdef orascp"
    assert lines[-1] == '[[ ${funcstack[1]} == _orascp ]] && _orascp_completion "$@"'


# -- the command answers the scripts ---------------------------------------------------------


@pytest.mark.parametrize(("typed", "expected"), CASES)
def test_bash_completes(typed: str, expected: set[str]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    # As bash does on Tab: COMP_WORDS/COMP_CWORD set, the function named by `complete -F` called
    # with the command name.
    driver = (
        'source "$1" || exit 1\n'
        "spec=$(complete -p orascp) || exit 1\n"
        "fn=${spec##*-F }; fn=${fn%% *}\n"
        'COMP_WORDS=("${@:2}"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n'
        '"$fn" orascp\n'
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    script = str(COMPLETIONS / "orascp.bash")
    result = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", driver, "bash", script, *typed.split(" ")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", hint(result.stderr)
    assert set(result.stdout.splitlines()) == expected, result.stdout


@pytest.mark.parametrize(("typed", "expected"), CASES)
def test_zsh_completes(typed: str, expected: set[str]) -> None:
    [call] = callbacks(committed("zsh"), typed)
    assert call[completion.COMPLETE_VAR] == "complete_zsh"
    result = run_callback(call)
    assert result.returncode == 0, result.stderr
    # `_arguments '*: :(("value":"description" ...))'`, one candidate a line.
    assert result.stdout.startswith("_arguments '*: :(("), result.stdout + result.stderr
    offered = set(re.findall(r'^(?:_arguments \'\*: :\(\()?"([^"]*)"', result.stdout, re.M))
    assert offered == expected, result.stdout


@pytest.mark.parametrize(("typed", "expected"), CASES)
def test_fish_completes(typed: str, expected: set[str]) -> None:
    calls = callbacks(committed("fish"), typed)
    actions = {call.get("_TYPER_COMPLETE_FISH_ACTION", ""): call for call in calls}
    assert sorted(actions) == ["get-args", "is-args"], calls

    listed = run_callback(actions["get-args"])
    assert listed.returncode == 0, listed.stderr
    # "value<TAB>description", one candidate a line, however long the description.
    lines = listed.stdout.splitlines()
    assert {line.split("\t")[0] for line in lines} == expected, listed.stdout
    assert all("\t" in line for line in lines), listed.stdout

    # Exit status 0 tells fish to offer those instead of file names.
    assert run_callback(actions["is-args"]).returncode == 0


def test_fish_falls_back_to_files_for_an_argument() -> None:
    is_args = next(
        call
        for call in callbacks(committed("fish"), "orascp cp ")
        if call.get("_TYPER_COMPLETE_FISH_ACTION") == "is-args"
    )
    assert run_callback(is_args).returncode == 1
