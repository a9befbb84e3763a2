"""tritbench: benchmark and cost-model 1.58-bit (ternary) LLMs against FP16 and 4-bit on your hardware."""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA", "Record", "load_results"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so that importing any submodule (the measuring child above all) does not load pandas.
    if name in __all__:
        from tritbench.results import records

        return getattr(records, name)
    raise AttributeError(f"module 'tritbench' has no attribute {name!r}")
