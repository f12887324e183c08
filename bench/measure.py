"""Run one command and measure it: wall time, the child's own peak RSS, exit status, output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TAIL_CHARS = 600
LAUNCHER = Path(__file__).with_name("launch.py")


@dataclass(frozen=True)
class Outcome:
    """What one process did: how long it took, its peak RSS and how it ended."""

    argv: list[str]
    wall: float
    maxrss_kib: int
    returncode: int
    timed_out: bool
    stdout: str
    stderr_tail: str

    @property
    def ok(self) -> bool:
        """Return whether the process exited 0 within its time limit."""
        return self.returncode == 0 and not self.timed_out


def _tail(text: str, chars: int = TAIL_CHARS) -> str:
    """Return the last ``chars`` characters of ``text``, stripped."""
    text = text.strip()
    return text if len(text) <= chars else "..." + text[-chars:]


def _launcher_argv(result: Path, timeout: float, argv: list[str]) -> list[str]:
    """Return the command running ``argv`` under the small launcher (see bench/launch.py)."""
    return [sys.executable, "-S", "-I", str(LAUNCHER), str(result), repr(timeout), *argv]


def _read_result(result: Path) -> tuple[int, float, int, bool] | None:
    """Return ``(maxrss_kib, wall, exit code, timed out)`` as the launcher wrote them, if it did."""
    try:
        rss, wall, code, timed_out = result.read_text().split()
    except (OSError, ValueError):
        return None
    return int(rss), float(wall), int(code), timed_out == "1"


def run_measured(argv: list[str], *, timeout: float) -> Outcome:
    """Run ``argv`` to completion and return its wall time, own peak RSS and output.

    The command runs under bench/launch.py, a parent of about 5 MiB that reaps it with
    ``os.wait4``: reaped straight from this process, its ``ru_maxrss`` would be at least this
    process's RSS (Linux keeps the high-water mark across ``exec``). The wall time is measured
    by the launcher around fork, exec and wait, so the launcher's own start-up is not in it.
    Output goes to temporary files, so a chatty process never blocks on a full pipe.
    """
    with tempfile.TemporaryDirectory(prefix="bench-run-") as scratch:
        result = Path(scratch) / "result"
        with open(Path(scratch) / "out", "w+b") as out, open(Path(scratch) / "err", "w+b") as err:
            proc = subprocess.Popen(
                _launcher_argv(result, timeout, argv),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
            _pid, status, _usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        measured = _read_result(result)
    if measured is None:
        why = f"launcher exited {proc.returncode} without a result: {_tail(stderr)}"
        return Outcome(argv, 0.0, 0, proc.returncode or 1, False, stdout, why)
    rss, wall, code, timed_out = measured
    return Outcome(argv, wall, rss, code, timed_out, stdout, _tail(stderr) or _tail(stdout))


def run_shell_timed(script: str, *, timeout: float, stdin: str = "") -> Outcome:
    """Run a shell ``script`` (a curl floor) in its own process group; return its wall time.

    Peak RSS is not meaningful for a pipeline of many short processes and is reported as 0.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(stdin.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    return Outcome(
        argv=["sh", "-c", script],
        wall=wall,
        maxrss_kib=0,
        returncode=proc.returncode,
        timed_out=timed_out,
        stdout=stdout.decode(errors="replace"),
        stderr_tail=_tail(stderr.decode(errors="replace")),
    )
