"""The measuring child imports only what it measures with: every module it loads is inside each case's
memory figures and against an edge profile's memory cap."""

import json
import subprocess
import sys

from tests.conftest import REPO

CHILD = "tritbench.execute.child"
# Third-party top-level packages the child may load: numpy (token traces) and psutil (RSS, CPU state).
ALLOWED_THIRD_PARTY = {"numpy", "psutil"}
PROBE = f"""
import json, sys
import {CHILD}
print(json.dumps(sorted(sys.modules)))
"""


def _child_modules() -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout)


def test_child_loads_no_analysis_or_terminal_libraries():
    loaded = {name.partition(".")[0] for name in _child_modules()}
    for heavy in ("pandas", "rich", "typer", "plotly", "onnx", "onnxruntime", "llama_cpp", "gguf"):
        assert heavy not in loaded, f"the measuring child imports {heavy}"


def test_child_import_closure_does_not_grow():
    own = {CHILD.partition(".")[0], "models", "backends", "reports", "tests"}
    third_party = {
        top for top in (name.partition(".")[0] for name in _child_modules())
        if top not in sys.stdlib_module_names and top not in own and not top.startswith("_")
    }
    new = sorted(third_party - ALLOWED_THIRD_PARTY)
    assert not new, f"new imports in the measuring child: {new}"
