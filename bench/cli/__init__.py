"""The `bench` command: thin typer commands over the library (plan, execute, results, analysis, reports),
registered in `tritbench.cli.commands`.

Errors in the user's input end as one line on stderr and exit code 2; a run whose cases failed exits 1 after
writing every record; Ctrl-C or SIGTERM exits 130 after writing what was measured.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point: one-line errors and fixed exit codes instead of tracebacks, Ctrl-C while the command's
    modules load included (they are imported here, not above, for that)."""
    try:
        from tritbench.cli import commands
        from tritbench.costmodel.errors import CostModelError
        from tritbench.errors import BenchError
        from tritbench.models import ModelError

        commands.app()  # standalone: usage errors exit 2 and typer.Exit sets the code
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
    except (BenchError, ModelError, CostModelError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        sys.exit(2)
