"""The `llama-bench` peer backend (backends/llamabench) with a real llama-bench, llama-quantize and
llama-simple, built by .ci/llama-bench.sh from the llama.cpp that .venv's llama-cpp-python vendors, and
with stub binaries for what a real build does not do on demand (bad JSON, a crash, gibberish tokens).
No test looks at a timing's value."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tritbench.backends.llamabench import check, convert, peer
from tritbench.backends.llamabench.backend import LlamaBenchBackend, LlamaBenchSession, reference_file
from tritbench.errors import ConfigError

from .conftest import REPO, read_jsonl, run_bench, skip_or_fail

SCRIPT = REPO / ".ci/llama-bench.sh"
STUB_HELP = ("usage: llama-bench [options]\n  -p, --n-prompt <n>\n  -n, --n-gen <n>\n  -d, --n-depth <n>\n"
             "  --no-warmup\n  -o, --output <csv|json|jsonl|md|sql>\n")


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHON": sys.executable})


@pytest.fixture(scope="module")
def build() -> Path:
    """The folder with the real tools (cached: a second build does nothing)."""
    if not shutil.which(os.environ.get("CXX", "g++")):
        skip_or_fail("building llama-bench needs a C++ compiler: apt-get install g++")
    try:
        import llama_cpp  # noqa: F401  # the tools link against its libraries
    except ModuleNotFoundError:
        skip_or_fail("the Python package 'llama_cpp' is not installed")
    proc = _script("build")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def peer_cache(tb_home, monkeypatch):
    monkeypatch.setenv("TRITBENCH_HOME", str(tb_home))  # converted files go to the test session's home


def options(**given) -> dict:
    """The backend's options as the plan hands them: defaults, then `given` parsed as `--opt` values are."""
    out = {name: opt.default for name, opt in LlamaBenchBackend.options.items()}
    for name, value in given.items():
        out[name] = LlamaBenchBackend.options[name].parse(name, value)
    return out


def stub(folder: Path, name: str, body: str, help_text: str = STUB_HELP) -> Path:
    """An executable shell script that prints `help_text` for --help and runs `body` otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\nif [ \"$1\" = --help ]; then cat <<'EOF'\n{help_text}EOF\nexit 0; fi\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ---- the real build ----

def test_build_is_cached_and_says_how_it_was_made(build):
    info = json.loads((build / "build.json").read_text())
    assert info["build_seconds"] >= 0 and "llama-cpp-python" in info["linked_against"]
    stamp = (build / "build.json").stat().st_mtime_ns
    again = _script("build")
    assert again.returncode == 0 and Path(again.stdout.strip()) == build
    assert (build / "build.json").stat().st_mtime_ns == stamp and "built" not in again.stderr
    for tool in ("llama-bench", "llama-quantize", "llama-simple"):
        assert os.access(build / tool, os.X_OK)


def test_pp_and_tg_come_back_as_samples_with_the_build_and_command(build, tiny_models):
    session = LlamaBenchBackend().open(str(tiny_models["tq2_0"]), 1, options(bin=build / "llama-bench"), 0)
    proc = subprocess.run([str(build / "llama-bench"), "--version"], capture_output=True, text=True)
    version = proc.stdout + proc.stderr
    reps, facts = session.measure(64, 0, 0, warmups=1, reps=3)
    assert len(reps) == 3 and all(r["prefill_s"] > 0 and r["prefill_s"] == r["sample_ns"] / 1e9 for r in reps)
    assert facts["llama_bench"]["samples_ns"] == [r["sample_ns"] for r in reps]
    assert facts["build_commit"] and f"commit {facts['build_commit']}" in version
    assert facts["build_commit"] == json.loads((build / "build.json").read_text())["source_commit"]
    assert isinstance(facts["build_number"], int)
    cmd = facts["command"]
    assert cmd[0] == str(build / "llama-bench") and cmd[cmd.index("-o") + 1] == "json"
    assert cmd[cmd.index("-b") + 1] == "2048" and cmd[cmd.index("-r") + 1] == "3" and cmd[cmd.index("-t") + 1] == "1"
    assert facts["llama_bench"]["model_filename"] == str(tiny_models["tq2_0"])

    reps, facts = session.measure(0, 8, 16, warmups=0, reps=2)
    assert len(reps) == 2 and all(len(r["decode_s"]) == 8 for r in reps)
    assert sum(reps[0]["decode_s"]) == pytest.approx(reps[0]["sample_ns"] / 1e9)
    assert facts["llama_bench"]["n_depth"] == 16 and "--no-warmup" in facts["command"]
    assert facts["warmup_runs"] == 0
    # the peer's own process: its peak RSS holds at least the mapped model file
    assert facts["process"]["peak_rss_bytes"] > tiny_models["tq2_0"].stat().st_size and facts["process"]["cpu_s"] > 0
    settings = session.effective_settings()
    assert settings["peer"]["bin"] == str(build / "llama-bench") and len(settings["peer"]["bin_sha256"]) == 64


def test_token_check_passes_for_llama_cpp_itself_and_fails_for_another_model(build, tiny_models, tb_home):
    from tritbench.models import synthesize_many
    from tritbench.models.overrides import preset_spec

    session = LlamaBenchSession(str(tiny_models["tq2_0"]), 1, options(bin=build / "llama-bench"))
    tc = session.token_check
    assert tc["status"] == "pass" and tc["reference"] == str(tiny_models["f16"]), tc
    assert tc["agreeing_prompts"] >= tc["prompts"] - 1 and tc["tool"].endswith("llama-simple")

    # negative control: the same build, compared with the F16 file of a model with other weights
    other = synthesize_many(preset_spec("tiny@seed=99"), ["f16"], cache=tb_home / "models")["f16"]
    with pytest.raises(RuntimeError, match="not llama.cpp F16's: greedy tokens of only [01] of 4"):
        LlamaBenchSession(str(tiny_models["tq2_0"]), 1, options(bin=build / "llama-bench", reference=other))


def test_conversion_by_the_builds_quantizer_is_exact_and_cached(build, tiny_models):
    opts = options(bin=build / "llama-bench", check=False)
    first = LlamaBenchSession(str(tiny_models["f16"]), 1, opts, fmt="tq1_0")
    assert first.conversion["type"] == "TQ1_0" and first.conversion["cached"] is False
    assert first.conversion["args"] == ["--token-embedding-type", "f16", "--output-tensor-type", "f16"]
    from gguf import GGUFReader

    mine = {t.name: t for t in GGUFReader(str(tiny_models["tq1_0"])).tensors}
    theirs = {t.name: t for t in GGUFReader(str(first.model)).tensors}
    assert sorted(mine) == sorted(theirs)
    for name, t in theirs.items():  # the build's quantizer keeps tritbench's trits bit for bit
        assert t.tensor_type == mine[name].tensor_type and np.array_equal(t.data, mine[name].data), name
    again = LlamaBenchSession(str(tiny_models["f16"]), 1, opts, fmt="tq1_0")
    assert again.model == first.model and again.conversion["cached"] is True
    assert again.effective_settings()["peer"]["format"] == "TQ1_0"
    reps, _ = again.measure(0, 4, 0, warmups=1, reps=1)
    assert len(reps) == 1


def test_a_format_the_build_cannot_produce_or_a_quantized_source_is_one_line(build, tiny_models):
    with pytest.raises(ConfigError, match=r"cannot produce I2_S \(it knows: .*TQ2_0"):
        LlamaBenchSession(str(tiny_models["f16"]), 1, options(bin=build / "llama-bench"), fmt="i2_s")
    with pytest.raises(ConfigError, match="holds TQ2_0 tensors: the peer's quantizer needs the F16 file"):
        LlamaBenchSession(str(tiny_models["tq2_0"]), 1, options(bin=build / "llama-bench"), fmt="tq1_0")


def test_bench_run_puts_the_peer_beside_llama_cpp_with_its_own_process_memory(build, tb_home, tmp_path):
    out = tmp_path / "res"
    proc = run_bench(["run", "-b", "llama-bench,llamacpp", "--opt", f"bin={build / 'llama-bench'}", "-m", "tiny",
                      "-f", "f16,tq2_0", "-w", "pp,tg", "-p", "16", "-n", "8", "-t", "1", "-r", "2", "--warmups", "1",
                      "--energy", "none", "--out", str(out)], tb_home)
    assert proc.returncode == 0, proc.stderr
    recs = read_jsonl(out)
    peers = [r for r in recs if r["backend"]["name"] == "llama-bench"]
    assert {(r["model"]["format"], r["workload"]["name"]) for r in peers} == \
        {(f, t) for f in ("f16", "tq2_0") for t in ("pp16", "tg8")}
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    for r in peers:
        st, m = r["settings"], r["metrics"]
        assert st["peer"]["token_check"]["status"] == "pass" and st["peer"]["conversion"] is None
        # every round's llama-bench command line, and the memory of llama-bench's process, not the child's
        assert [run["command"][0] for run in st["runs"]] == [str(build / "llama-bench")] * len(st["runs"])
        peaks = [run["process"]["peak_rss_bytes"] for run in st["runs"]]
        assert m["peak_rss_bytes"] == max(peaks) and m["rss_after_load_bytes"] is None
        assert m["memory"]["source"].startswith("VmHWM of the peer process")
        assert "cpu_ms" not in m  # llama-bench's CPU time per repetition is not known
        if r["workload"]["name"] == "tg8":
            assert m["token_latency_ms"]["basis"] == "mean per repetition"
            assert len(m["token_latency_ms"]["samples"]) == 2
    assert "llama-bench" in proc.stdout and "llamacpp" in proc.stdout
    assert "check: llama-bench/tiny/tq2_0: greedy tokens vs llama.cpp F16: pass (" in proc.stderr


def test_bench_run_without_bin_is_one_line_before_anything_runs(tb_home, tmp_path):
    proc = run_bench(["run", "-b", "llama-bench", "-m", "tiny", "-f", "tq2_0", "-w", "pp", "-p", "8", "--out",
                      str(tmp_path / "res")], tb_home)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "needs --opt bin=" in lines[0], proc.stderr
    assert not (tmp_path / "res").exists() or not read_jsonl(tmp_path / "res")


PY_BENCH = """#!{python}
import json, sys
if sys.argv[1:] == ["--help"]:
    sys.stdout.write({help!r})
    sys.exit(0)
a = sys.argv
get = lambda flag: int(a[a.index(flag) + 1])
print(json.dumps([{{"n_prompt": get("-p"), "n_gen": get("-n"), "n_depth": 0, "model_filename": a[a.index("-m") + 1],
                    "samples_ns": [1000000 * (i + 1) for i in range(get("-r"))]}}]))
"""


def test_a_peer_format_is_made_by_the_peers_quantizer_and_recorded_as_that_format(tb_home, tmp_path):
    """bitnet.cpp's I2_S cannot be built here (neither PyPI nor apt has it): a stand-in build whose quantizer
    lists I2_S checks the plan, the conversion and the record; the real build's conversion is tested above."""
    peer_dir = tmp_path / "peer"
    peer_dir.mkdir()
    bench = peer_dir / "llama-bench"
    bench.write_text(PY_BENCH.format(python=sys.executable, help=STUB_HELP))
    bench.chmod(0o755)
    # copies the F16 file: the record must still say I2_S, with the F16 file as its source
    copy = 'eval src=\\${$(($# - 2))} dst=\\${$(($# - 1))}\ncp "$src" "$dst"'  # args: ... SOURCE DEST TYPE
    stub(peer_dir, "llama-quantize", copy,
         help_text="usage: llama-quantize\n  36  or  I2_S    :  2 bpw ternary\n   1  or  F16     : 16 bpw\n")
    out = tmp_path / "res"
    proc = run_bench(["run", "-b", "llama-bench", "--opt", f"bin={bench}", "-m", "tiny", "-f", "i2_s", "-w", "pp",
                      "-p", "16", "-t", "1", "-r", "2", "--warmups", "0", "--energy", "none", "--out", str(out)],
                     tb_home)
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_jsonl(out)
    model, peer_settings = rec["model"], rec["settings"]["peer"]
    assert rec["status"] == "ok" and model["format"] == "i2_s" and model["ternary"] is True
    assert peer_settings["conversion"]["type"] == "I2_S" and peer_settings["format"] == "I2_S"
    assert model["made_from"]["path"].endswith("tiny-f16.gguf") and model["path"] == peer_settings["model"]
    assert model["file_bytes"] == Path(model["path"]).stat().st_size
    assert peer_settings["token_check"]["status"] == "unavailable"  # no llama-simple in this build
    assert rec["settings"]["runs"][0]["llama_bench"]["model_filename"] == model["path"]


# ---- bad input and failing peers (stubs) ----

def test_bin_missing_not_executable_or_not_a_llama_bench_is_refused_when_the_plan_parses_it(tmp_path):
    opt = LlamaBenchBackend.options["bin"]
    with pytest.raises(ConfigError, match="not found"):
        opt.parse("bin", str(tmp_path / "nope"))
    plain = tmp_path / "llama-bench"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not executable"):
        opt.parse("bin", str(plain))
    with pytest.raises(ConfigError, match="not a llama-bench with JSON output"):
        opt.parse("bin", str(stub(tmp_path / "other", "llama-bench", "", help_text="usage: something else\n")))
    with pytest.raises(ConfigError, match="is not a file"):
        opt.parse("bin", str(tmp_path))
    assert opt.parse("bin", str(stub(tmp_path / "ok", "llama-bench", ""))) == str(tmp_path / "ok" / "llama-bench")


def test_output_that_is_not_json_fails_the_workload_with_its_first_line(tmp_path, tiny_models):
    bench = stub(tmp_path, "llama-bench", "echo '| model | size |'")
    session = LlamaBenchSession(str(tiny_models["f16"]), 1, options(bin=bench))
    with pytest.raises(RuntimeError, match=r"not JSON: '\| model \| size \|'"):
        session.measure(32, 0, 0, 1, 2)


def test_a_crashing_peer_fails_with_its_telling_stderr_line(tmp_path, tiny_models):
    bench = stub(tmp_path, "llama-bench", "echo 'llama_model_load: loading' >&2\n"
                 "echo 'ggml.c:1234: GGML_ASSERT(n_dims >= 2) failed' >&2\nkill -SEGV $$")
    session = LlamaBenchSession(str(tiny_models["f16"]), 1, options(bin=bench))
    with pytest.raises(RuntimeError, match=r"llama-bench killed by SIGSEGV: ggml.c:1234: GGML_ASSERT\(n_dims >= 2\)"):
        session.measure(32, 0, 0, 1, 2)


def test_a_peer_printing_gibberish_tokens_is_never_measured(tmp_path, tiny_models):
    bench = stub(tmp_path, "llama-bench", "exit 0")
    # prints the prompt as llama-simple does, then tokens of its own
    stub(tmp_path, "llama-simple", 'eval last=\\${$#}; printf "<s> %s zq zq zq zq\\n" "$last"')
    with pytest.raises(RuntimeError, match="not llama.cpp F16's: greedy tokens of only 0 of 4"):
        LlamaBenchSession(str(tiny_models["tq2_0"]), 1, options(bin=bench))


def test_without_a_greedy_tool_the_check_is_unavailable_and_says_why(tmp_path, tiny_models):
    bench = stub(tmp_path, "llama-bench", "exit 0")
    session = LlamaBenchSession(str(tiny_models["tq2_0"]), 1, options(bin=bench))
    assert session.token_check == {"status": "unavailable",
                                   "reason": f"no llama-simple beside {bench}: nothing prints this build's greedy "
                                             "tokens"}
    assert session.effective_settings()["peer"]["token_check"]["status"] == "unavailable"


def test_a_test_other_than_the_one_asked_for_or_missing_samples_fails(tmp_path, tiny_models):
    test = {"n_prompt": 16, "n_gen": 0, "n_depth": 0, "samples_ns": [1000, 2000]}
    bench = stub(tmp_path, "llama-bench", f"echo '{json.dumps(test)}'")
    session = LlamaBenchSession(str(tiny_models["f16"]), 1, options(bin=bench, check=False))
    with pytest.raises(RuntimeError, match=r"n_prompt, n_gen, depth = \(16, 0, 0\); asked for \(32, 0, 0\)"):
        session.measure(32, 0, 0, 1, 2)
    with pytest.raises(RuntimeError, match="2 samples for -r 3"):
        session.measure(16, 0, 0, 1, 3)


# ---- pure parts ----

def test_parse_reads_json_and_jsonl_and_names_what_is_wrong():
    t = {"n_prompt": 8, "n_gen": 0, "samples_ns": [5]}
    assert peer.parse_bench_output(json.dumps([t, t])) == [t, t]
    assert peer.parse_bench_output("\n".join([json.dumps(t)] * 2) + "\n") == [t, t]
    with pytest.raises(ValueError, match="printed nothing"):
        peer.parse_bench_output(" \n")
    with pytest.raises(ValueError, match="no per-repetition samples"):
        peer.parse_bench_output(json.dumps([{"n_prompt": 8, "n_gen": 0, "avg_ns": 5}]))
    with pytest.raises(ValueError, match="without n_prompt/n_gen"):
        peer.parse_bench_output(json.dumps([{"samples_ns": [1]}]))


def test_quantize_types_and_the_telling_line():
    usage = ("usage: q\n  36  or  TQ1_0   :  1.69 bpw ternarization\n  37  or  TQ2_0   :  2.06 bpw\n"
             "   2  or  Q4_0  : x\n")
    assert peer.quantize_types(usage) == {"TQ1_0": 36, "TQ2_0": 37, "Q4_0": 2}
    assert peer.telling_line("a\nllama_model_load: error loading model\nb\n") == "llama_model_load: error loading model"
    assert peer.telling_line("") == "no output on stderr"


def test_command_never_shrinks_the_batch_and_refuses_depth_on_an_old_build():
    old = peer.BenchFeatures(depth=False, no_warmup=False, jsonl=True)
    opts = options()
    cmd = peer.bench_command(Path("/b/llama-bench"), Path("m.gguf"), 0, 32, 0, 2, 5, opts, old, warmup=False)
    assert cmd[cmd.index("-b") + 1] == "2048" and cmd[cmd.index("-ub") + 1] == "512" and "--no-warmup" not in cmd
    with pytest.raises(ConfigError, match="no --n-depth"):
        peer.bench_command(Path("/b/llama-bench"), Path("m.gguf"), 0, 32, 64, 2, 5, opts, old, warmup=True)
    with pytest.raises(ConfigError, match=">= 2"):
        LlamaBenchBackend.options["n_batch"].parse("n_batch", "1")


def test_agreement_counts_leading_pieces_after_the_prompt():
    assert check.agreeing_tokens("<s> a b", ["x", "y", "z"], "<s> a bxyq\n") == 2
    assert check.agreeing_tokens("<s> a b", ["x"], "something else") is None
    v = check.verdict("a b", "<s> a b", ["x", "y"], "<s> a bxy\n", need=2)
    assert v["agree"] and v["peer"] == "xy" and v["reference"] == "xy"


def test_reference_file_is_the_f16_twin_of_a_preset_file(tiny_models, tmp_path):
    assert reference_file(tiny_models["tq2_0"], None) == tiny_models["f16"]
    assert reference_file(tiny_models["f16"], None) == tiny_models["f16"]
    lone = tmp_path / "lone-tq2_0.gguf"
    shutil.copy(tiny_models["tq2_0"], lone)
    assert reference_file(lone, None) is None
    assert convert.quantize_args({"token_embd.weight": "Q8_0"}) == ["--token-embedding-type", "q8_0"]


def test_a_greedy_tool_whose_output_cannot_be_read_or_that_fails_gives_unavailable_not_a_pass(tmp_path, tiny_models):
    bench = stub(tmp_path / "a", "llama-bench", "exit 0")
    stub(tmp_path / "a", "llama-simple", "echo 'main: tokens go to the log'")
    tc = LlamaBenchSession(str(tiny_models["tq2_0"]), 1, options(bin=bench)).token_check
    assert tc["status"] == "unavailable" and "did not print the prompt and its greedy tokens" in tc["reason"]
    bench = stub(tmp_path / "b", "llama-bench", "exit 0")
    stub(tmp_path / "b", "llama-simple", "echo 'error: unknown argument' >&2; exit 1")
    tc = LlamaBenchSession(str(tiny_models["tq2_0"]), 1, options(bin=bench)).token_check
    assert tc == {"status": "unavailable", "reason": "llama-simple failed: llama-simple exited with code 1: "
                                                     "error: unknown argument"}


def test_a_peer_tool_that_hangs_is_stopped_at_its_timeout(tmp_path):
    hang = stub(tmp_path, "llama-bench", "exec sleep 30")
    with pytest.raises(RuntimeError, match="llama-bench did not finish in 0.5 s"):
        peer.run_measured([str(hang), "-m", "x"], timeout=0.5)


def test_a_peers_peak_is_its_own_not_the_spawning_processs():
    """wait4's ru_maxrss starts at the spawning process's high-water mark (this pytest process, holding 300 MiB
    here); the peer's peak is read from its own VmHWM while it runs."""
    held = bytearray(300 << 20)
    held[::4096] = b"x" * len(held[::4096])
    _, usage = peer.run_measured(["sleep", "0.3"])
    assert usage["source"].startswith("VmHWM of the peer process")
    assert 0 < usage["peak_rss_bytes"] < 50 << 20
    del held
