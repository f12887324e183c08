"""Draw live progress on a terminal: a row per blob and manifest in flight, on stderr.

Rows in flight show the state, short digest, name, a bar, bytes done/total, speed and elapsed
time; a finished row collapses to one line with a mark and the full digest. When there are more
rows than fit, only the newest finished rows are kept, above every row still in flight.

The hooks only update counters under a lock; rich's refresh thread draws at most
``refresh_per_second`` frames from them, so drawing never sits on the copy's path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from orascp.descriptor import Descriptor
from orascp.display.text import FirstNames, display_name, format_size, short_digest

__all__ = ["ProgressDisplay", "format_size"]

_MARKS = {"Copied": ("✓", "green"), "Mounted": ("✓", "cyan"), "Exists": ("✓", "blue")}


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


@dataclass(slots=True)
class _Row:
    desc: Descriptor
    state: str
    started: float
    done: int = 0
    finished: float | None = None


class ProgressDisplay:
    """Show live rows on a rich console; its methods have the engine hooks' signatures."""

    wants_progress: ClassVar[bool] = True

    def __init__(
        self,
        console: Console,
        *,
        refresh_per_second: float = 10,
        max_rows: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.clock = clock
        self._max_rows = max_rows
        self._rows: dict[str, _Row] = {}
        self._finished: list[_Row] = []
        self._names = FirstNames()
        self._lock = threading.Lock()
        self._spinner = Spinner("dots", style="yellow")
        self._live = Live(
            self,
            console=console,
            refresh_per_second=refresh_per_second,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start drawing."""
        self._live.start()

    def stop(self) -> None:
        """Draw the last frame and give the terminal back."""
        self._live.stop()

    # -- hooks --------------------------------------------------------------------------------

    def pre_copy(self, desc: Descriptor) -> None:
        """Add a row for a transfer that starts."""
        with self._lock:
            self._rows[desc.digest] = _Row(desc, "Copying", self.clock())

    def on_progress(self, desc: Descriptor, done: int) -> None:
        """Move a row's bar."""
        row = self._rows.get(desc.digest)
        if row is not None:
            row.done = done  # one int store: no lock needed

    def post_copy(self, desc: Descriptor) -> None:
        """Collapse a finished transfer to its done line."""
        self._finish(desc, "Copied")

    def on_mounted(self, desc: Descriptor) -> None:
        """Show a mounted blob as done."""
        self._finish(desc, "Mounted")

    def on_copy_skipped(self, desc: Descriptor) -> None:
        """Show content the destination already holds as done."""
        self._finish(desc, "Exists")

    def on_deduplicated(self, desc: Descriptor) -> None:
        """Show a second occurrence of a digest under another name as skipped."""
        with self._lock:
            if self._names.renamed(desc):
                now = self.clock()
                self._finished.append(_Row(desc, "Skipped", now, desc.size, now))

    def _finish(self, desc: Descriptor, state: str) -> None:
        now = self.clock()
        with self._lock:
            row = self._rows.pop(desc.digest, None) or _Row(desc, state, now)
            row.state, row.finished, row.done = state, now, desc.size
            self._finished.append(row)
            self._names.note(desc)

    # -- drawing ------------------------------------------------------------------------------

    def _room(self) -> int:
        if self._max_rows is not None:
            return self._max_rows
        # Leave room for the shell prompt and the summary that follows.
        return max(5, self.console.size.height - 3)

    def __rich__(self) -> RenderableType:
        """Render the current frame."""
        now = self.clock()
        with self._lock:
            active = list(self._rows.values())
            finished = list(self._finished)
        room = self._room()
        parts: list[RenderableType] = []
        shown_active = active
        if len(active) > room:
            # More transfers than lines: the newest are shown, and how many are not.
            shown_active = active[len(active) - room + 1 :]
            parts.append(Text(f"… {len(active) - len(shown_active)} more in flight", style="dim"))
        free = room - len(parts) - len(shown_active)
        # A finished row takes two lines (state and name, then the full digest); when some are
        # left out, one line says how many.
        keep = free // 2 if len(finished) * 2 <= free else max(0, (free - 1) // 2)
        hidden = len(finished) - min(keep, len(finished))
        if hidden:
            parts.append(Text(f"… {hidden} more done", style="dim"))
        for row in finished[hidden:]:
            parts.extend(self._done_lines(row))
        if shown_active:
            parts.append(self._active_table(shown_active, now))
        return Group(*parts)

    def _done_lines(self, row: _Row) -> tuple[Text, Text]:
        mark, style = _MARKS.get(row.state, ("-", "dim"))
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{mark} ", style=style)
        head.append(f"{row.state:<7} ", style="bold")
        head.append(display_name(row.desc))
        if row.state == "Copied" and row.finished is not None:
            head.append(
                f"  {format_size(row.desc.size)} in {_duration(row.finished - row.started)}",
                style="dim",
            )
        digest = Text(f"  └─ {row.desc.digest}", style="dim", no_wrap=True, overflow="ellipsis")
        return head, digest

    def _active_table(self, rows: list[_Row], now: float) -> Table:
        # Fixed columns: spinner 1, state 7, digest 12, sizes 19, speed 11, time 6, 7 gaps.
        spare = max(0, self.console.width - 63)
        bar_width = max(10, min(30, spare // 2))
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(width=1, no_wrap=True)
        table.add_column(width=7, no_wrap=True)
        table.add_column(width=12, no_wrap=True)
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column(width=bar_width, no_wrap=True)
        table.add_column(justify="right", no_wrap=True, width=19)
        table.add_column(justify="right", no_wrap=True, width=11)
        table.add_column(justify="right", no_wrap=True, width=6)
        for row in rows:
            elapsed = max(now - row.started, 1e-6)
            total = max(row.desc.size, 1)
            table.add_row(
                self._spinner,
                Text(row.state, style="bold"),
                Text(short_digest(row.desc)[:12]),
                Text(display_name(row.desc)),
                ProgressBar(total=total, completed=min(row.done, total), width=bar_width),
                f"{format_size(row.done)}/{format_size(row.desc.size)}",
                f"{format_size(row.done / elapsed)}/s",
                _duration(elapsed),
            )
        return table
