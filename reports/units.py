"""Numbers as people read them, for every printer (terminal, HTML, markdown, `bench cost`): one place, so a
figure reads the same everywhere; '—' for a missing value, never a zero."""

from __future__ import annotations

import math
import re
from typing import Any

# C0 and C1 control characters (ESC starts terminal title, clipboard and hyperlink sequences) and DEL;
# newlines and tabs too, since one table cell is one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def missing(value: Any) -> bool:
    """None, NaN, infinity or pandas' NA."""
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, float) and not math.isfinite(value)


def si(value: Any, unit: str) -> str:
    """1.5e9, 'B' -> '1.5 GB' (decimal prefixes, 3 significant digits)."""
    if missing(value):
        return "—"
    value = float(value)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"),
                           (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def fmt(value: Any, spec: str = "{:,.1f}", suffix: str = "") -> str:
    """A number with `spec`."""
    return "—" if missing(value) else spec.format(value) + suffix


def iec(nbytes: Any) -> str:
    """Bytes with binary prefixes, as llama-bench prints model sizes: '328.46 MiB'."""
    if missing(nbytes):
        return "—"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= div:
            return f"{nbytes / div:.2f} {unit}"
    return f"{int(nbytes)} B"


def count(n: Any) -> str:
    """A parameter count as llama-bench prints it: '171.86 M'."""
    if missing(n) or not n:
        return "—"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(int(n))


def times(value: Any) -> str:
    """A ratio: '2.45x' ('0.0031x' below 0.01, '123x' from 100 on)."""
    if missing(value):
        return "—"
    value = float(value)
    if value >= 100:
        return f"{value:.0f}x"
    return f"{value:.2f}x" if value >= 0.01 else f"{value:.2g}x"


def interval_text(lo: Any, hi: Any, unstable: Any = False) -> str:
    """A speed-up's interval: '[2.31x-2.60x]'; '[0.10x-50.00x], unstable' when it is wide or a side's samples are
    unstable; '[no interval]' when there were too few values to bound it."""
    span = "[no interval]" if missing(lo) or missing(hi) else f"[{times(lo)}-{times(hi)}]"
    return span + (", unstable" if not missing(unstable) and bool(unstable) else "")


def speedup_text(ratio: Any, lo: Any = None, hi: Any = None, unstable: Any = False, reference: bool = False) -> str:
    """A speed-up with its interval, as every printer shows it: '2.45x [2.31x-2.60x]', '9.05x [0.10x-50.00x],
    unstable', '2.45x [no interval]'; a baseline against itself (`reference`) is a bare '1.00x'."""
    if missing(ratio):
        return "—"
    return times(ratio) if reference else f"{times(ratio)} {interval_text(lo, hi, unstable)}"


def inert(value: Any) -> str:
    """Text from a model file or a record, safe to print in a terminal or a table cell: control characters
    (escape sequences, carriage returns, newlines) become spaces or '?', so nothing reaches the terminal raw."""
    text = "—" if missing(value) else str(value)
    return _CONTROL.sub(lambda m: " " if m.group() in "\n\r\t" else "?", text)
