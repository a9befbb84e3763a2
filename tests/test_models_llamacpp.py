"""The synthesized files load and run in llama.cpp (each in a child process: a bad file can abort it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tritbench.models import FORMATS, get_preset, synthesize_many

from .conftest import import_or_skip

import_or_skip("llama_cpp")

# Loads the model, evaluates a short prompt and saves the last position's logits.
LOAD_AND_EVAL = """
import json, sys
import numpy as np
import llama_cpp

path, out = sys.argv[1], sys.argv[2]
# logits_all: without it llama-cpp-python 0.3.x leaves llm.scores at zero after eval().
llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=1, n_batch=64, logits_all=True, verbose=False)
tokens = llm.tokenize(b"the quick brown fox jumps over the lazy dog")
llm.eval(tokens)
logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
np.save(out, logits)
print(json.dumps({"n_vocab": llm.n_vocab(), "n_tokens": llm.n_tokens, "tokens": tokens,
                  "name": llm.metadata.get("general.name"), "arch": llm.metadata.get("general.architecture")}))
"""

PRESETS = ("tiny", "tiny-bitnet")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    cache = tmp_path_factory.mktemp("cache")
    return {name: synthesize_many(get_preset(name), FORMATS, cache=cache) for name in PRESETS}


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[dict, np.ndarray]]:
    """Every (preset, format) loaded and evaluated once, in its own process."""
    out_dir = tmp_path_factory.mktemp("logits")
    results = {}
    for name, paths in files.items():
        for fmt, path in paths.items():
            out = out_dir / f"{name}-{fmt}.npy"
            proc = subprocess.run(
                [sys.executable, "-c", LOAD_AND_EVAL, str(path), str(out)],
                capture_output=True, text=True, timeout=120,
            )
            assert proc.returncode == 0, f"{path.name} failed to load/eval:\n{proc.stderr[-2000:]}"
            results[name, fmt] = (json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out))
    return results


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", PRESETS)
def test_loads_and_evaluates(runs, name: str, fmt: str) -> None:
    spec = get_preset(name)
    report, logits = runs[name, fmt]
    assert (report["name"], report["arch"]) == (name, spec.arch)
    assert report["n_vocab"] == spec.vocab == logits.shape[0]
    assert report["tokens"][0] == 1  # BOS added
    assert report["n_tokens"] == len(report["tokens"]) > 5  # the text tokenized into pieces, not only bytes
    assert np.isfinite(logits).all() and logits.std() > 0


def assert_ternary_computes_what_f16_computes(f16: np.ndarray, tq1: np.ndarray, tq2: np.ndarray) -> None:
    """The tolerance every CPU is held to (x86 here, aarch64 cores in test_llamacpp_arm.py)."""
    np.testing.assert_array_equal(tq1, tq2)  # same weights, same int8 activation path
    assert np.corrcoef(f16, tq2)[0, 1] > 0.99  # only activation quantization separates them


@pytest.mark.parametrize("name", PRESETS)
def test_ternary_formats_compute_what_f16_computes(runs, name: str) -> None:
    assert_ternary_computes_what_f16_computes(*(runs[name, fmt][1] for fmt in ("f16", "tq1_0", "tq2_0")))
