"""Print one status line per event, exactly as ``oras cp`` does without a terminal.

``Copying 2ef548696ac7 hello.tar`` / ``Copied  …`` / ``Exists  …`` / ``Mounted …`` / ``Skipped …``:
the digest shortened to 12 hex characters (sha256) and the title annotation, else the media type.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, TextIO

from orascp.descriptor import Descriptor

__all__ = [
    "Display",
    "FirstNames",
    "NullDisplay",
    "TextDisplay",
    "display_name",
    "format_size",
    "short_digest",
]


class Display(Protocol):
    """Show a copy as it runs: the engine hooks' methods, plus a start and a stop."""

    # Whether on_progress does anything: the engine only counts bytes for a display that does.
    wants_progress: ClassVar[bool]

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def pre_copy(self, desc: Descriptor) -> None: ...
    def post_copy(self, desc: Descriptor) -> None: ...
    def on_copy_skipped(self, desc: Descriptor) -> None: ...
    def on_mounted(self, desc: Descriptor) -> None: ...
    def on_deduplicated(self, desc: Descriptor) -> None: ...
    def on_progress(self, desc: Descriptor, done: int) -> None: ...


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_size(size: float) -> str:
    """Format a byte count in binary units with three significant digits (``12.3 MiB``)."""
    if size < 1024:
        return f"{int(size)} B"
    unit = 0
    while True:
        size /= 1024
        unit += 1
        # The precision is chosen on the rounded text: 9.999 KiB is "10.0 KiB", not "10.00".
        text = f"{size:.2f}"
        if float(text) >= 10:
            text = f"{size:.1f}"
        if float(text) >= 100:
            text = f"{size:.0f}"
        if float(text) < 1024 or unit == len(_UNITS) - 1:
            return f"{text} {_UNITS[unit]}"


def short_digest(desc: Descriptor) -> str:
    """Return the first 12 hex characters of a sha256 digest, or any other digest whole."""
    return desc.hex[:12] if desc.algorithm == "sha256" else desc.digest


def display_name(desc: Descriptor) -> str:
    """Return the title annotation of ``desc``, else its media type."""
    return desc.title or desc.media_type


class FirstNames:
    """Remember the name each digest was first shown under.

    ``oras cp`` prints ``Skipped`` for a second occurrence of a digest only when it carries another
    name (the same bytes under another title); every output applies this one rule.
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def note(self, desc: Descriptor) -> None:
        """Remember ``desc``'s name unless its digest was already shown."""
        self._names.setdefault(desc.digest, display_name(desc))

    def renamed(self, desc: Descriptor) -> bool:
        """Tell whether ``desc`` repeats a digest already shown under another name."""
        return self._names.get(desc.digest, display_name(desc)) != display_name(desc)


class _Quiet:
    """Provide the no-op parts of a display."""

    wants_progress: ClassVar[bool] = False

    def start(self) -> None:
        """Do nothing: there is nothing to set up."""

    def stop(self) -> None:
        """Do nothing: every line is already written."""

    def on_progress(self, desc: Descriptor, done: int) -> None:
        """Ignore byte progress."""


class TextDisplay(_Quiet):
    """Print status lines to a text stream; its methods have the engine hooks' signatures."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._names = FirstNames()

    def _line(self, prompt: str, desc: Descriptor) -> None:
        self.stream.write(f"{prompt} {short_digest(desc)} {display_name(desc)}\n")
        self.stream.flush()

    def pre_copy(self, desc: Descriptor) -> None:
        """Announce a transfer that is starting."""
        self._names.note(desc)
        self._line("Copying", desc)

    def post_copy(self, desc: Descriptor) -> None:
        """Announce a finished transfer."""
        self._line("Copied ", desc)

    def on_copy_skipped(self, desc: Descriptor) -> None:
        """Announce content the destination already has."""
        self._names.note(desc)
        self._line("Exists ", desc)

    def on_mounted(self, desc: Descriptor) -> None:
        """Announce a blob mounted from another repository."""
        self._names.note(desc)
        self._line("Mounted", desc)

    def on_deduplicated(self, desc: Descriptor) -> None:
        """Announce a second occurrence of a digest, when it carries another name."""
        if self._names.renamed(desc):
            self._line("Skipped", desc)


class NullDisplay(_Quiet):
    """Show nothing (``--format json`` and library use)."""

    def pre_copy(self, desc: Descriptor) -> None:
        """Ignore the event."""

    def post_copy(self, desc: Descriptor) -> None:
        """Ignore the event."""

    def on_copy_skipped(self, desc: Descriptor) -> None:
        """Ignore the event."""

    def on_mounted(self, desc: Descriptor) -> None:
        """Ignore the event."""

    def on_deduplicated(self, desc: Descriptor) -> None:
        """Ignore the event."""
