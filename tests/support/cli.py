"""Run the real ``orascp`` command in a subprocess and read what it printed."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tests.support.artifacts import TITLE, Blob

# Generous for a loaded CI machine; a copy of the test artifacts takes well under a second.
TIMEOUT = 60.0

STATUS_RE = re.compile(r"^(Copying|Copied|Exists|Mounted|Skipped) +([0-9a-f]{12}) (.+)$")


def orascp_command(*, module: bool = False) -> list[str]:
    """Return the argv prefix that starts orascp: the console script, else ``python -m``."""
    if not module:
        script = shutil.which("orascp", path=os.path.dirname(sys.executable))
        if script:
            return [script]
    return [sys.executable, "-m", "orascp"]


@dataclass(frozen=True)
class Status:
    """One status line: ``<verb> <12 hex> <title or media type>``."""

    verb: str
    short: str
    name: str


@dataclass(frozen=True)
class Result:
    """What one orascp run returned and printed."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def statuses(self) -> list[Status]:
        """Return the status lines (not the summary), in order."""
        out = []
        for line in self.lines:
            m = STATUS_RE.match(line)
            if m:
                out.append(Status(*m.groups()))
        return out

    def verbs(self, verb: str) -> list[Status]:
        return [s for s in self.statuses if s.verb == verb]

    def for_digest(self, digest: str) -> list[Status]:
        short = short_digest(digest)
        return [s for s in self.statuses if s.short == short]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error:")]

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def short_digest(digest: str) -> str:
    """Return the 12 hex characters orascp shows for a sha256 digest."""
    return digest.split(":", 1)[1][:12]


def display_name(blob: Blob) -> str:
    """Return the title annotation of ``blob``, else its media type, as orascp shows it."""
    return (blob.annotations or {}).get(TITLE) or blob.media_type


def status_line(verb: str, blob: Blob) -> str:
    """Return the exact status line orascp prints for ``blob`` (``Copied`` padded to 7)."""
    return f"{verb:<7} {short_digest(blob.digest)} {display_name(blob)}"


def run_orascp(
    *args: str,
    module: bool = False,
    timeout: float = TIMEOUT,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> Result:
    """Run ``orascp <args>`` to completion and capture its output.

    ``input`` is written to its stdin (which is otherwise inherited); ``env`` holds variables
    set on top of this process's environment; ``preexec_fn`` runs in the child before it starts
    orascp (to set resource limits, for instance).
    """
    argv = [*orascp_command(module=module), *args]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=input,
        env={**os.environ, **env} if env is not None else None,
        preexec_fn=preexec_fn,
    )
    return Result(argv, proc.returncode, proc.stdout, proc.stderr)


def start_orascp(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``orascp <args>`` without waiting; finish it with :func:`finish`.

    ``env`` holds variables set on top of this process's environment.
    """
    argv = [*orascp_command(), *args]
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env} if env is not None else None,
    )


def finish(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> Result:
    """Wait for a process started by :func:`start_orascp` and capture its output."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    return Result(list(map(str, proc.args)), proc.returncode, stdout, stderr)


# Runs orascp's console-script entry point (orascp.cli.app:main), but only once the parent says
# so: the slow imports happen first, then a "ready" line, then a wait on stdin. Processes started
# by start_together() thus begin copying within a millisecond of each other instead of within
# the jitter of starting Python, which makes races between them likely rather than occasional.
_ALIGNED_MAIN = """\
import sys
import orascp.cli.root, orascp.display, orascp.engine, orascp.targets
from orascp.cli.app import main
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.buffer.read(1)
sys.argv = ["orascp", *sys.argv[1:]]
main()
"""


def start_together(*commands: list[str]) -> list[subprocess.Popen[str]]:
    """Start one orascp per argument list and release them all at the same moment."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ALIGNED_MAIN, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    for proc in procs:
        assert proc.stdout is not None
        # The child blocks right after this line until released, so nothing else is buffered.
        ready = proc.stdout.readline()
        if ready != "ready\n":
            for other in procs:
                other.kill()
                other.communicate()
            raise RuntimeError(f"orascp did not start: {ready!r}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("g")
        proc.stdin.flush()  # communicate(), in finish(), closes stdin
    return procs


def wait_for_output_or_exit(proc: subprocess.Popen[str], timeout: float) -> bool:
    """Wait until ``proc`` has printed something on stdout or exited; return whether it did.

    Nothing is read: the output stays in the pipe for :func:`finish`.
    """
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        return bool(selector.select(timeout))
