"""Report builders: tables, HTML page, markdown summary and the `bench report` command, over records shaped
like the ones `bench run` writes (no browser here: see test_reports_browser.py)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import plotly
import pytest
import typer
from plotly.offline import get_plotlyjs

from tritbench.analysis.stats import summarize
from tritbench.cli.report import report
from tritbench.errors import ConfigError
from tritbench.reports.html import render_html
from tritbench.reports.markdown import render_markdown
from tritbench.reports.tables import build_data, energy_provenance, from_records
from tritbench.reports.terminal import render as terminal_render
from tritbench.results.records import SCHEMA, Record

TINY_SPEC = {"arch": "llama", "embd_type": "f16", "ffn": 512, "heads": 4, "hidden": 256, "kv_heads": 2, "layers": 2,
             "n_ctx": 512, "name": "tiny", "norm_eps": 1e-05, "output_type": "f16", "seed": 1234, "vocab": 1536}
FILE_BYTES = {"f16": 3970176, "q4_0": 2274432, "tq1_0": 1859712, "tq2_0": 1915008}
BPW = {"f16": 16.0, "q4_0": 4.5, "tq1_0": 1.6875, "tq2_0": 2.0625}
UNAVAILABLE = "unavailable:no powercap RAPL found"


def _stat(median: float) -> dict:
    return {"n": 2, "median": median, "q1": median * 0.9, "q3": median * 1.1, "samples": [median * 0.9, median * 1.1]}


def _machine(mid: str = "a54b2b26bbeff7a1", cpu: str = "AMD EPYC", arch: str = "x86_64") -> dict:
    return {"id": mid, "arch": arch, "cpu_model": cpu, "isa": ["avx2", "fma"], "physical_cores": 2,
            "logical_cores": 2, "ram_bytes": 25e9, "os": "Linux", "kernel": "6.18", "board": None, "hypervisor": True}


def llm_record(fmt: str = "f16", kind: str = "tg", tps: float = 1000.0, model: str = "tiny",
               energy: dict | None = None, machine: dict | None = None, status: str = "ok",
               error: str | None = None) -> dict:
    n_prompt, n_gen = (32, 0) if kind == "pp" else (0, 16)
    metrics = {
        "tokens_per_s": _stat(tps), "peak_rss_bytes": 97e6,
        "energy": energy or {"source": UNAVAILABLE, "joules": None, "joules_per_token": None},
        "memory": {"load": {"peak_rss_bytes": 89e6},
                   ("prefill" if kind == "pp" else "decode"): {"peak_rss_bytes": 91e6}},
    }
    if kind == "pp":
        metrics["prompt_tokens_per_s"] = _stat(tps)
        metrics["ttft_ms"] = _stat(32 / tps * 1000)
    else:
        metrics["gen_tokens_per_s"] = _stat(tps)
    return {
        "schema": SCHEMA, "run_id": "r1", "case_id": f"{model}-{fmt}-{kind}", "status": status, "error": error,
        "backend": {"name": "llamacpp"},
        "model": {"name": model, "format": fmt, "path": f"/models/{model}-{fmt}.gguf", "n_params": 1967360,
                  "bits_per_weight": BPW[fmt], "file_bytes": FILE_BYTES[fmt], "embd_type": "f16",
                  "output_type": "f16", "spec": dict(TINY_SPEC, name=model)},
        "workload": {"kind": kind, "name": f"{kind}{n_prompt or n_gen}", "n_prompt": n_prompt, "n_gen": n_gen,
                     "depth": 0, "M": 0, "K": 0, "N": 0},
        "settings": {"n_threads": 2},
        "metrics": metrics if status == "ok" else {},
        "machine": machine or _machine(),
    }


def kernel_record(fmt: str = "tern2", latency_ms: float = 0.05, backend: str = "onnx",
                  machine: dict | None = None) -> dict:
    nbytes = {"tern2": 262148, "fp32": 4194304, "nbits2": 393216}[fmt]
    return {
        "schema": SCHEMA, "run_id": "r2", "case_id": f"k-{backend}-{fmt}", "status": "ok", "error": None,
        "backend": {"name": backend},
        "model": {"name": "1024x1024", "format": fmt, "n_params": 1048576, "file_bytes": nbytes,
                  "bits_per_weight": nbytes * 8 / 1048576},
        "workload": {"kind": "gemv", "name": "gemv 1024x1024", "n_prompt": 0, "n_gen": 0, "depth": 0, "M": 1,
                     "K": 1024, "N": 1024},
        "settings": {"n_threads": 2, "cache": "cold"},
        "metrics": {"latency_ms": _stat(latency_ms), "weight_gbps": _stat(nbytes / latency_ms / 1e6),
                    "tokens_per_s": _stat(1000 / latency_ms), "read_bandwidth": {"gbps": 28.0},
                    "bandwidth_fraction": nbytes / latency_ms / 1e6 / 28.0, "peak_rss_bytes": 3e8,
                    "energy": {"source": UNAVAILABLE}},
        "machine": machine or _machine(),
    }


def full_set(machine: dict | None = None, scale: float = 1.0, model: str = "tiny") -> list[dict]:
    recs = []
    for fmt, tg, pp in (("f16", 1800, 27000), ("q4_0", 8000, 38000), ("tq1_0", 2500, 20000), ("tq2_0", 3000, 15000)):
        recs.append(llm_record(fmt, "tg", tg * scale, model=model, machine=machine))
        recs.append(llm_record(fmt, "pp", pp * scale, model=model, machine=machine))
    for fmt, lat in (("fp32", 0.23), ("tern2", 0.047), ("nbits2", 0.084)):
        recs.append(kernel_record(fmt, lat / scale, machine=machine))
    return recs


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run_report(args: list[str]) -> None:
    app = typer.Typer()
    app.command()(report)
    app([str(a) for a in args], standalone_mode=False)


# ---- tables ---------------------------------------------------------------------------------------------

def test_speedup_and_headline_per_machine():
    a = full_set()
    b = full_set(_machine("bbbbbbbbbbbbbbbb", "Cortex-A76", "aarch64"), scale=0.25)
    data = from_records(a + b)
    assert len(data.machines) == 2 and len(data.cases) == 16 and len(data.kernels) == 6
    tg = data.cases[(data.cases["test"] == "tg16") & (data.cases["format"] == "tq2_0")]
    # Normalised by each machine's own f16 run: the slower machine shows the same speed-up.
    assert sorted(tg["speedup"].round(6)) == [round(3000 / 1800, 6)] * 2
    h = data.headline[data.headline["test"] == "tg16"]
    assert set(h["ternary_format"]) == {"tq2_0"} and len(h) == 2
    assert h["size_ratio"].iloc[0] == pytest.approx(FILE_BYTES["f16"] / FILE_BYTES["tq2_0"])
    k = data.kernels[data.kernels["format"] == "tern2"]
    assert k["speedup"].iloc[0] == pytest.approx(0.23 / 0.047)


def test_roofline_uses_the_machines_measured_bandwidth():
    data = from_records(full_set())
    assert data.cases["bandwidth_gbps"].eq(28.0).all()
    assert data.cases["roofline_tokens_per_s"].notna().all()
    assert data.cases["pct_of_roofline"].gt(0).all()
    assert any(c.startswith("roofline_tokens_per_s @ ") for c in data.projections)
    assert set(data.projections["format"]) >= {"f16", "tq1_0"}
    forced = from_records(full_set(), bandwidth_gbps=100.0)
    assert forced.cases["bandwidth_gbps"].eq(100.0).all()


def test_energy_provenance_is_kept_apart():
    measured = {"source": "measured:rapl/package-0", "joules": 2.0, "joules_per_token": 0.002}
    estimated = {"source": "estimated:tdp x cpu time", "joules": 3.0, "joules_per_token": 0.003}
    # A reading that says unavailable yet carries a number must never show that number.
    bogus = {"source": "unavailable:sensor wrapped", "joules": 0.0, "joules_per_token": 0.0}
    recs = [llm_record("f16", energy=measured), llm_record("tq1_0", energy=estimated),
            llm_record("tq2_0", energy=bogus), llm_record("q4_0", energy={"source": None})]
    c = from_records(recs).cases.set_index("format")
    assert c.loc["f16", "energy_kind"] == "measured" and c.loc["f16", "j_per_token"] == 0.002
    assert c.loc["tq1_0", "energy_kind"] == "estimated" and c.loc["tq1_0", "j_per_token"] == 0.003
    assert c.loc["tq2_0", "energy_kind"] == "unavailable" and math.isnan(c.loc["tq2_0", "j_per_token"])
    assert c.loc["tq2_0", "energy_detail"] == "sensor wrapped"
    assert c.loc["q4_0", "energy_kind"] == "unavailable"
    assert energy_provenance("bogus:x")[0] == "unavailable"
    page = render_html(from_records(recs))
    assert "measured J\\u002ftoken" in page and "estimated J\\u002ftoken" in page and "unavailable: no bar" in page
    assert "sensor wrapped" in page


# ---- empty, failed and bad input --------------------------------------------------------------------------

def test_report_from_nothing_says_so(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    data = build_data([empty])
    assert data.status_line.startswith("No result records")
    page, md = render_html(data), render_markdown(data)
    assert "No result records were found" in page and "No result records were found" in md
    assert "Plotly" not in page  # nothing to chart: no 4 MB of JavaScript either


def test_report_from_only_failed_records_says_so():
    recs = [llm_record("f16", status="failed", error="model <load> failed | OOM"),
            llm_record("tq1_0", status="failed", error="boom")]
    data = from_records(recs)
    assert data.status_line.startswith("All 2 result record(s) failed")
    page, md = render_html(data), render_markdown(data)
    assert "All 2 result record(s) failed" in page and "model &lt;load&gt; failed | OOM" in page
    assert "All 2 result record(s) failed" in md and "model &lt;load&gt; failed \\| OOM" in md


def test_cli_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        run_report([tmp_path / "missing.jsonl", "-o", tmp_path / "r.html"])
    good = write_jsonl(tmp_path / "run-x.jsonl", full_set())
    with pytest.raises(ConfigError, match="--format"):
        run_report([good, "--format", "pdf"])
    with pytest.raises(ConfigError, match="--bandwidth"):
        run_report([good, "--bandwidth", "-3"])


def test_cli_exit_code_2_through_main(tmp_path, monkeypatch, capsys):
    """As the lead registers it: tritbench.cli.main maps BenchError to exit 2 with one line."""
    import tritbench.cli as cli
    import tritbench.cli.commands as commands

    app = typer.Typer()
    app.command("report")(report)
    monkeypatch.setattr(commands, "app", app)
    monkeypatch.setattr("sys.argv", ["bench", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: results file or folder not found") and "\n" not in err


# ---- the page ---------------------------------------------------------------------------------------------

def test_cli_writes_html_and_markdown(tmp_path):
    res = write_jsonl(tmp_path / "run-1.jsonl", full_set())
    run_report([res, "-o", tmp_path / "out" / "r.html"])
    run_report([tmp_path, "--format", "md", "-o", tmp_path / "r.md"])
    page = (tmp_path / "out" / "r.html").read_text(encoding="utf-8")
    # plotly.js inlined exactly once, and no network fetch of it.
    marker = get_plotlyjs()[:200]
    assert page.count(marker) == 1
    assert '<script src="http' not in page
    for heading in ("Summary: FP16 against 1.58-bit", "Speed", "Memory", "Energy", "Roofline", "Kernels",
                    "Cost-model projections by model size", "Machines", "Cases"):
        assert f"<h2>{heading}</h2>" in page
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert md.startswith("## tritbench report") and "### FP16 vs 1.58-bit" in md and "| tq2_0 |" in md
    assert "Energy: 0 measured, 0 estimated, 11 unavailable" in md
    assert len(md) < 8000


def test_strings_from_results_are_escaped():
    evil = "<script>alert(1)</script>"
    recs = [copy.deepcopy(r) for r in full_set(model=evil)]
    recs[0]["model"]["path"] = '/tmp/"><img src=x onerror=alert(2)>.gguf'
    page = render_html(from_records(recs), title="<b>t</b>")
    assert evil not in page and "<img src=x" not in page and "<b>t</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    md = render_markdown(from_records(recs))
    assert evil not in md


def test_plotly_version():
    assert int(plotly.__version__.split(".")[0]) >= 5


def test_mixed_ok_and_failed_records_list_the_failures():
    recs = full_set() + [llm_record("tq1_0", kind="tg", status="failed", error="worker died: signal 9")]
    data = from_records(recs)
    assert data.status_line is None and len(data.failures) == 1
    page, md = render_html(data), render_markdown(data)
    assert "worker died: signal 9" in page and "### Failures" in md and "worker died: signal 9" in md
    assert "12 record(s): 11 measured, 1 failed" in md
    # One machine, one backend: the markdown states them once instead of repeating a column.
    assert "All rows: machine AMD EPYC (x86_64, a54b2b), backend llamacpp" in md


def test_format_facts_come_from_the_records_first():
    """A peer engine's format no installed backend declares (bitnet.cpp's i2_s) is compared as its record says;
    records without the facts fall back to what the installed backends declare (tq2_0: ternary, over f16)."""
    base, old = llm_record("f16", tps=100.0), llm_record("tq2_0", tps=150.0)
    peer = llm_record("tq1_0", tps=300.0)
    peer["model"].update(format="i2_s", ternary=True, baseline="f16")
    peer["case_id"] = "tiny-i2_s-tg"
    base["model"].update(ternary=False, baseline=None)
    data = from_records([base, old, peer])
    facts = {r["format"]: (r["ternary"], r["baseline"], round(r["speedup"], 2)) for r in data.cases.to_dict("records")}
    assert facts == {"f16": (False, None, 1.0), "tq2_0": (True, "f16", 1.5), "i2_s": (True, "f16", 3.0)}
    (head,) = data.headline.to_dict("records")
    assert head["ternary_format"] == "i2_s" and head["speedup"] == 3.0


def test_cli_reports_what_it_can_read_and_names_the_lines_it_skipped(tmp_path, capsys):
    path = write_jsonl(tmp_path / "run-x.jsonl", full_set())
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"schema": "tritbench.result/1"}\nnot json\n')
    run_report([path, "--format", "md", "-o", tmp_path / "r.md"])
    err = capsys.readouterr().err
    assert f"skipped {path}:{len(full_set()) + 1}: 'run_id' is missing" in err
    assert f"skipped {path}:{len(full_set()) + 2}: not a JSON record" in err
    assert "FP16 vs 1.58-bit" in (tmp_path / "r.md").read_text()


# ---- speed-ups with their intervals ---------------------------------------------------------------------------

def _measured(rec: dict, samples: list[float]) -> dict:
    """A record with one sample per round, as `bench run` writes it (summarize's metric, the run's plan)."""
    rec = copy.deepcopy(rec)
    rec["metrics"]["tokens_per_s"] = summarize(samples)
    rec["settings"].update(requested={"n_threads": 2}, repetitions=len(samples), rounds=len(samples), warmups=1)
    return rec


def test_speedups_carry_their_interval_in_every_printer():
    """Eight rounds whose drift both formats share: tq2_0 is 2.5x f16 within +-2 % each round, so the paired
    interval (k = 4 at 95 % with 8 pairs: the 4th smallest and largest Walsh averages) is [2.5 x 0.98, 2.5 x 1.02],
    and its Hodges-Lehmann ratio 2.5 x sqrt(0.98 x 1.02). tq1_0 swings 10x between rounds: unstable. q4_0 ran 5
    repetitions: unpaired with the 8 of f16, and 5 samples cannot bound a 95 % interval."""
    drift = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99]
    f16 = _measured(llm_record("f16"), [100 * d for d in drift])
    tq2 = _measured(llm_record("tq2_0"), [250 * d * (1.02 if i % 2 else 0.98) for i, d in enumerate(drift)])
    tq1 = _measured(llm_record("tq1_0"), [150 * d * m for d, m in zip(drift, (0.3, 3, 1, 0.5, 2, 1, 0.4, 2.5),
                                                                       strict=True)])
    q4 = _measured(llm_record("q4_0"), [300.0] * 5)
    data = from_records([f16, tq2, tq1, q4])
    c = data.cases.set_index("format")
    assert c.loc["tq2_0", "speedup_method"] == "paired, 8 rounds" and c.loc["tq2_0", "speedup_n"] == 8
    assert c.loc["tq2_0", "speedup"] == pytest.approx(2.5 * math.sqrt(0.98 * 1.02))
    assert c.loc["tq2_0", "speedup_lo"] == pytest.approx(2.5 * 0.98)
    assert c.loc["tq2_0", "speedup_hi"] == pytest.approx(2.5 * 1.02)
    assert not c.loc["tq2_0", "speedup_unstable"] and c.loc["tq1_0", "speedup_unstable"]
    assert c.loc["q4_0", "speedup_method"] == "unpaired bootstrap, 8+5 samples"
    assert math.isnan(c.loc["q4_0", "speedup_lo"]) and c.loc["q4_0", "speedup"] == pytest.approx(3.0)
    assert c.loc["f16", "speedup_text"] == "1.00x"  # the baseline against itself
    assert c.loc["tq2_0", "speedup_text"] == "2.50x [2.45x-2.55x]"
    assert c.loc["q4_0", "speedup_text"] == "3.00x [no interval]"
    assert c.loc["tq1_0", "speedup_text"].endswith("], unstable")
    (head,) = data.headline.to_dict("records")
    assert head["ternary_format"] == "tq2_0" and head["speedup_text"] == "2.50x [2.45x-2.55x]"

    md = render_markdown(data)
    assert "| tg16 | 100.0 | tq2_0 | 249.9 | 2.50x [2.45x-2.55x] |" in md  # the headline
    assert "| q4_0 | 300.0 | 3.00x [no interval] |" in md and c.loc["tq1_0", "speedup_text"] in md
    assert "Speed-ups with 95 % intervals (paired over the rounds of one run, else unpaired bootstrap)" in md
    page = render_html(data)
    assert "(<b>2.50x [2.45x-2.55x]</b>)" in page and "<td>3.00x [no interval]</td>" in page
    assert "a side&#x27;s samples are unstable" in page
    table = terminal_render([Record.from_dict(r) for r in (f16, tq2, tq1, q4)], "md")
    row = next(ln for ln in table.splitlines() if "| tq2_0 " in ln)
    assert row.rstrip(" |").endswith("| [2.45x-2.55x]           |  2.50x")
    assert "| 95 % interval " in table and "fewer than 6 rounds or samples per side" in table


def test_an_unpaired_speedup_pools_a_baseline_measured_in_several_runs():
    f16_a = _measured(llm_record("f16"), [100.0] * 6)
    f16_b = _measured(llm_record("f16"), [110.0] * 6) | {"run_id": "r0", "case_id": "tiny-f16-tg-r0"}
    tq2 = _measured(llm_record("tq2_0"), [210.0] * 6) | {"run_id": "r9"}
    c = from_records([f16_a, f16_b, tq2]).cases
    (row,) = c[c["format"] == "tq2_0"].to_dict("records")
    # 12 pooled f16 samples, median (100 + 110) / 2 = 105: exactly 2x, and a bootstrap over both runs
    assert row["speedup"] == pytest.approx(2.0) and row["speedup_method"] == "unpaired bootstrap, 12+6 samples"
    assert 210 / 110 == pytest.approx(row["speedup_lo"]) and row["speedup_hi"] == pytest.approx(210 / 100)
