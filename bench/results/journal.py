"""A run's journal: every child's outcome, appended and synced the moment the child ends.

Records are written when a case ends, which with interleaved rounds is its last round; the journal keeps
the rounds before that, so that `bench run --resume` of a killed run (SIGKILL, a power cut) continues from
the rounds already measured instead of measuring them again. It lives beside the run file as
`run-<id>.journal` (not `.jsonl`: it is not a results file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class Journal:
    def __init__(self, path: Path):
        self.path = path

    def entries(self) -> list[dict]:
        """Every whole entry, in the order written (a line cut short by a crash is ignored)."""
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for raw in lines:
            try:
                entry = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def append(self, entry: dict) -> None:
        """One entry on a line of its own (after a torn line, on a fresh one), flushed and synced."""
        line = json.dumps(entry).encode() + b"\n"
        with open(self.path, "ab+") as fh:
            if fh.tell() and (fh.seek(-1, os.SEEK_END) or fh.read(1) != b"\n"):
                line = b"\n" + line
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
