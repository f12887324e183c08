"""Show a copy's progress and result; the engine's hooks are wired to these objects by the CLI."""

from __future__ import annotations

from orascp.display.text import NullDisplay, TextDisplay, display_name, short_digest

__all__ = ["NullDisplay", "TextDisplay", "display_name", "short_digest"]
