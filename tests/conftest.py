import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

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


def bench_in_process(args: list, monkeypatch, capsys) -> tuple[int, str, str]:
    """`bench ARGS` in-process, through tritbench.cli.main and the registered commands: (exit code, out, err)."""
    import tritbench.cli as cli

    monkeypatch.setattr("sys.argv", ["bench", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


def one_line_error(code: int, err: str, fragment: str) -> None:
    """Exit code 2 and one line on stderr naming the problem: no traceback."""
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: error:") and fragment in lines[0], err
    assert "Traceback" not in err


PLUGINS = "aborting=tests.plugins:AbortingBackend,slow=tests.plugins:SlowBackend,memhog=tests.plugins:MemHogBackend"


# ---- tools a test needs: skipped on a developer's machine, required under CI ----

def under_ci() -> bool:
    """CI sets CI=true (GitHub Actions, GitLab); CI=1 counts too, an empty, `0` or `false` CI does not."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str, *, allow_module_level: bool = False) -> NoReturn:
    """Skip for want of a tool (chromium, objdump, qemu, a Python package), except under CI: there the
    tool is required, and a missing one fails the test instead of silently skipping it."""
    __tracebackhide__ = True  # reports name the caller's line, not this one
    if under_ci():
        pytest.fail(f"{reason}, and CI requires it", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def import_or_skip(name: str) -> ModuleType:
    """pytest.importorskip that fails under CI. Only a module that is not installed skips: one that is
    installed but fails to import is an error everywhere."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name != exc.name and not name.startswith(exc.name + "."):
            raise  # the module is there, something it imports is not
        skip_or_fail(f"the Python package {name!r} is not installed", allow_module_level=True)


# ---- test layers: `pytest -m unit` (seconds), `-m integration`, `-m system`; `make test` runs all ----

# Every tests/test_*.py, in one place (tests/test_conftest_helpers.py checks that none is missing).
# unit: pure and fast, in-process; integration: `bench` CLI runs and other subprocesses, real llama.cpp,
# real onnxruntime sessions, anything timed in real seconds; system: a browser, qemu/ARM, objdump.
# A module missing here is unit.
LAYERS = {
    "test_bandwidth.py": "unit",
    "test_cli.py": "integration",
    "test_compare.py": "unit",
    "test_config.py": "unit",
    "test_conftest_helpers.py": "unit",
    "test_costmodel.py": "unit",
    "test_costmodel_cli.py": "unit",
    "test_costmodel_paper.py": "unit",
    "test_energy_polled.py": "integration",  # helper threads step power through schedules in real time
    "test_energy_rapl.py": "integration",  # counters advanced by a separate process, a forked child
    "test_energy_reading.py": "unit",
    "test_energy_run.py": "integration",
    "test_energy_sampling_cost.py": "integration",  # real sampling processes, timed in real seconds
    "test_energy_select.py": "unit",
    "test_gate.py": "unit",  # the gate's schedule with a fake child in place of a process
    "test_gate_cli.py": "integration",
    "test_history.py": "unit",
    "test_history_pg.py": "integration",  # a real PostgreSQL server started on loopback
    "test_fleet.py": "system",
    "test_fleet_inventory.py": "unit",
    "test_kernel_backends.py": "integration",
    "test_kernels.py": "integration",
    "test_kernel_sizing.py": "unit",  # kernel repetitions sized on a fake clock
    "test_layout.py": "unit",
    "test_lifecycle.py": "integration",  # real runners killed and signalled
    "test_llamacpp.py": "integration",
    "test_llamabench.py": "integration",  # a real llama-bench built by .ci/llama-bench.sh, stub binaries
    "test_llamacpp_arm.py": "system",  # cross-compiled llama.cpp under qemu-user
    "test_machine.py": "integration",
    "test_memory.py": "integration",
    "test_model_overrides.py": "unit",
    "test_models_info.py": "unit",
    "test_models_llamacpp.py": "integration",
    "test_models_resolve.py": "unit",
    "test_models_spec.py": "unit",
    "test_models_synth.py": "unit",
    "test_onnx_arm.py": "system",
    "test_onnx_attention.py": "integration",  # the attention op in real onnxruntime sessions
    "test_onnx_baselines.py": "integration",
    "test_onnx_decoder.py": "integration",  # real onnxruntime sessions, llama.cpp and `bench run`
    "test_onnx_disasm.py": "system",
    "test_onnx_op.py": "integration",
    "test_paired.py": "unit",
    "test_profiles.py": "integration",
    "test_records.py": "unit",
    "test_reports.py": "unit",
    "test_reports_browser.py": "system",
    "test_runner.py": "integration",
    "test_runner_unit.py": "unit",  # the Runner with a fake child in place of a process
    "test_speedup.py": "unit",
    "test_stats.py": "unit",
    "test_worker_imports.py": "integration",
    "test_workloads.py": "unit",
}
LAYER_NAMES = ("unit", "integration", "system")


def layer_of(path: Path) -> str:
    return LAYERS.get(path.name, "unit")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(getattr(pytest.mark, layer_of(item.path)))
