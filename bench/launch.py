"""Run one command and record its own peak RSS and wall time, from a parent with a small RSS.

Usage: ``python -S -I bench/launch.py RESULT_FILE TIMEOUT_S COMMAND [ARG...]``

Linux carries a process's ``ru_maxrss`` across ``exec``: a child forked (or vforked) from a large
process and then exec'ing a tool reports at least the parent's high-water RSS at the fork. Forked
straight from the benchmark process (tens of MiB, more as it runs), every tool would seem to
use that much. This launcher is a bare interpreter of about 5 MiB: it forks, execs the command,
reaps it with ``os.wait4`` and writes ``maxrss_kib wall_seconds exit_code timed_out`` to
RESULT_FILE. The command inherits stdin, stdout and stderr. It only imports ``os``, ``signal``,
``sys`` and ``time`` to stay small.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main(argv: list[str]) -> int:
    """Run the command in ``argv[3:]`` and write what it cost to the file ``argv[1]``."""
    result, timeout, command = argv[1], float(argv[2]), argv[3:]
    timed_out = False
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"launch: cannot run {command[0]}: {exc}\n".encode())
        os._exit(127)

    def on_alarm(_signum: int, _frame: object) -> None:
        nonlocal timed_out
        timed_out = True
        os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still this child's

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    signal.setitimer(signal.ITIMER_REAL, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(result, "w") as out:
        out.write(f"{usage.ru_maxrss} {wall!r} {code} {int(timed_out)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
