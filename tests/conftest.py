import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tb_home(tmp_path_factory) -> Path:
    """A TRITBENCH_HOME of the test session's own, so tests never touch ~/.cache."""
    return tmp_path_factory.mktemp("tritbench-home")


@pytest.fixture(scope="session")
def tiny_models(tb_home) -> dict[str, Path]:
    """The `tiny` preset synthesized once in all five formats."""
    from tritbench.models import FORMATS, get_preset, synthesize_many

    return synthesize_many(get_preset("tiny"), FORMATS, cache=tb_home / "models")


def run_bench(args: list[str], tb_home: Path, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    """`bench ARGS` in a child process, as a user runs it."""
    full_env = {
        **os.environ,
        "TRITBENCH_HOME": str(tb_home),
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "tritbench.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO,
    )


def read_jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines() if line]


PLUGINS = "aborting=tests.plugins:AbortingBackend,slow=tests.plugins:SlowBackend,memhog=tests.plugins:MemHogBackend"
