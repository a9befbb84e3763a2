"""Old result-record schemas brought up to the current one by pure functions, so that every record ever written
still loads (llama.cpp's compare script broke more than once when its columns changed).

A new schema version is added in three steps: append it to SCHEMAS (and set records.SCHEMA to it), register an
upgrader from the version before it with `@upgrader(old, new)`, and add a golden JSONL file of the old version
under tests/fixtures/records/ (tests/test_history.py checks all three)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

# Every record schema that has ever been written, oldest first; the last is the current one (records.SCHEMA).
SCHEMAS: tuple[str, ...] = ("tritbench.result/1",)
CURRENT = SCHEMAS[-1]

Upgrader = Callable[[dict], dict]

# old schema -> (the schema after it, a pure function from a record of the old one to a record of the next)
UPGRADES: dict[str, tuple[str, Upgrader]] = {}


def upgrader(old: str, new: str) -> Callable[[Upgrader], Upgrader]:
    """Register `fn` as the step from schema `old` to schema `new`."""

    def register(fn: Upgrader) -> Upgrader:
        UPGRADES[old] = (new, fn)
        return fn

    return register


def upgrade(rec: object, upgrades: Mapping[str, tuple[str, Upgrader]] | None = None, target: str = CURRENT) -> object:
    """`rec` in the `target` schema, through each registered step in turn. A record already in the target schema
    is returned as it is; one of an unknown schema (or not a dict) too, for the reader to name and skip. The
    input is never changed: the steps work on a copy."""
    steps = UPGRADES if upgrades is None else upgrades
    if not isinstance(rec, dict) or rec.get("schema") == target or rec.get("schema") not in steps:
        return rec
    out = copy.deepcopy(rec)
    seen = set()
    while out.get("schema") != target and out.get("schema") in steps:
        old = out["schema"]
        if old in seen:
            raise ValueError(f"record schema upgrades loop at {old!r}")
        seen.add(old)
        new, fn = steps[old]
        out = fn(out)
        if not isinstance(out, dict) or out.get("schema") != new:
            raise ValueError(f"the upgrade from {old!r} did not give a {new!r} record")
    return out
