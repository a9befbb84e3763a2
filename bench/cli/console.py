"""The terminal: stderr for progress and messages, stdout for tables; and the comma-list flags."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text

from tritbench.errors import ConfigError
from tritbench.reports.units import inert

err = Console(stderr=True)


def stdout(width: int = 160) -> Console:
    """Piped output gets room for a full table rather than rich's 80-column fallback."""
    return Console() if sys.stdout.isatty() else Console(width=width)


def split(text: str | None) -> list[str] | None:
    """`a, b,c` -> ['a', 'b', 'c']; None (flag not given) stays None."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def ints(text: str | None, name: str) -> list[int] | None:
    items = split(text)
    if items is None:
        return None
    try:
        return [int(t) for t in items]
    except ValueError:
        raise ConfigError(f"{name} takes comma-separated integers, got '{text}'") from None


def warn_skipped(problems: list[str], most: int = 10) -> None:
    """Lines of results files that were skipped, one warning each (the first `most`), on stderr."""
    for p in problems[:most]:
        err.print(Text("warning: skipped ", style="yellow") + plain(p), soft_wrap=True)
    if len(problems) > most:
        err.print(Text(f"warning: {len(problems) - most} more unreadable lines skipped", style="yellow"))


def plain(value: object) -> Text:
    """Text from a file or a record as a rich cell: never read as markup, control characters made inert."""
    return Text(inert(value))
