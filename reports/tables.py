"""The pandas summaries every report printer shares: one tidy row per case, speed-ups over the f16 baseline
on the same machine (each with its interval, method and an unstable flag), energy with its provenance, roofline
columns from the cost model, the cost model's projections by model size, machine fingerprints and failures.

Pure over records: `from_records` does no I/O; `build_data` only reads the result files."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tritbench.analysis.speedup import DEFAULT_CONFIDENCE, PAIRED, UNPAIRED, WIDE_FACTOR, Side, min_samples, speedup
from tritbench.plugin import GENERATION_KINDS, KERNEL_KINDS, format_info
from tritbench.reports.units import si, speedup_text
from tritbench.results.records import read_records

ENERGY_KINDS = ("measured", "estimated", "unavailable")
# Cases that differ only in format: a speed-up compares a format with its baseline inside such a group.
GROUP = ["machine", "backend", "model", "test", "n_threads", "setting"]


def energy_provenance(source: Any) -> tuple[str, str]:
    """(measured|estimated|unavailable, the rest of the source string) of `metrics.energy.source`."""
    if not isinstance(source, str) or not source:
        return "unavailable", "no energy reading in the record"
    kind, _, detail = source.partition(":")
    if kind not in ENERGY_KINDS:
        return "unavailable", f"unrecognised energy source {source!r}"
    return kind, detail.strip()


@dataclass
class ReportData:
    """Everything a report shows, as DataFrames with short column names."""

    sources: list[str]
    n_records: int
    cases: pd.DataFrame
    kernels: pd.DataFrame
    failures: pd.DataFrame
    machines: pd.DataFrame
    headline: pd.DataFrame
    projections: pd.DataFrame
    bandwidths: dict[str, dict[str, Any]] = field(default_factory=dict)
    node: str = "7nm"
    emulated: list[str] = field(default_factory=list)  # machine labels whose timings an emulator made

    @property
    def n_ok(self) -> int:
        return len(self.cases) + len(self.kernels)

    @property
    def status_line(self) -> str | None:
        """A plain sentence when there is nothing to chart, else None."""
        if self.n_records == 0:
            return "No result records were found: nothing to report."
        if self.n_ok == 0:
            return f"All {self.n_records} result record(s) failed: no measurements to report (see Failures)."
        return None


def build_data(paths: Iterable[str | os.PathLike], bandwidth_gbps: float | None = None, node: str = "7nm",
               problems: list[str] | None = None) -> ReportData:
    """Read result files or folders (BenchError on a missing path; unreadable lines are skipped and named in
    `problems`) and summarise them."""
    paths = [os.fspath(p) for p in paths]
    return from_records(read_records(paths, problems), bandwidth_gbps, node, sources=paths)


def from_records(records: list[dict], bandwidth_gbps: float | None = None, node: str = "7nm",
                 sources: list[str] | None = None) -> ReportData:
    """Summarise result records (dicts as `bench run` writes them)."""
    from tritbench.costmodel import energy_table

    table = energy_table(node)
    df = pd.json_normalize(records, sep=".") if records else pd.DataFrame()
    if len(df):
        df["machine"] = machine_labels(df)
    status = _col(df, "status")
    ok = df[status == "ok"] if len(df) else df
    failed = df[status != "ok"] if len(df) else df
    joined, bandwidths = _join_costs(ok, bandwidth_gbps, table)
    cases = _llm_cases(joined) if len(joined) else pd.DataFrame()
    kernels = _kernel_cases(joined) if len(joined) else pd.DataFrame()
    return ReportData(
        sources=list(sources or []), n_records=len(df), cases=cases, kernels=kernels,
        failures=_failures(failed), machines=_machines(df), headline=headline(cases),
        projections=_projections(table, bandwidths), bandwidths=bandwidths, node=node,
        emulated=sorted(set(df.loc[_emulated(df), "machine"])) if len(df) else [],
    )


def _emulated(df: pd.DataFrame) -> pd.Series:
    return _col(df, "machine.emulation.emulator").notna()


def table_notes(data: ReportData) -> list[str]:
    """The lines every report prints under its tables: how speed-ups were made, and which timings are emulated."""
    return [n for n in (speedup_note(data.cases, data.kernels), emulation_note(data)) if n]


def emulation_note(data: ReportData) -> str | None:
    """One line for under the tables when some records were measured under an emulator (None otherwise)."""
    if not data.emulated:
        return None
    return (f"Emulated: {'; '.join(data.emulated)} ran under an emulator: those timings (and speed-ups) are the "
            "emulator's, not the hardware's speed. They show that the code runs and computes right, nothing more.")


def _col(df: pd.DataFrame, name: str, default: Any = np.nan) -> pd.Series:
    """A column, or `default` on every row when no record has that key."""
    if name in df:
        return df[name]
    return pd.Series([default] * len(df), index=df.index, dtype=object if not isinstance(default, float) else float)


def _num(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(_col(df, name), errors="coerce")


def machine_labels(df: pd.DataFrame) -> pd.Series:
    """'[host: ]cpu model (arch, id…)' per row: readable, and distinct for distinct machines."""
    cpu = _col(df, "machine.cpu_model", "unknown CPU").fillna("unknown CPU").astype(str)
    arch = _col(df, "machine.arch", "?").fillna("?").astype(str)
    mid = _col(df, "machine.id", "").fillna("").astype(str)
    emulator = _col(df, "machine.emulation.emulator", "").fillna("").astype(str)
    emu_cpu = _col(df, "machine.emulation.cpu", "").fillna("").astype(str)
    emulated = np.where(emulator != "", ", EMULATED by " + emulator + np.where(emu_cpu != "", " -cpu " + emu_cpu, ""),
                        "")
    host = _col(df, "machine.host.name", "").fillna("").astype(str)  # the inventory's name (bench run --hosts)
    return (np.where(host != "", host + ": ", "") + cpu + " (" + arch + np.where(mid != "", ", " + mid.str[:6], "")
            + emulated + ")")


def _join_costs(ok: pd.DataFrame, bandwidth_gbps: float | None, table) -> tuple[pd.DataFrame, dict]:
    """The cost model joined machine by machine: records without their own read bandwidth (LLM cases) use
    --bandwidth, else the median bandwidth the same machine's kernel records measured."""
    from tritbench.costmodel import join_results

    if not len(ok):
        return ok, {}
    parts, bandwidths = [], {}
    for label, sub in ok.groupby("machine", sort=True):
        measured = _num(sub, "metrics.read_bandwidth.gbps").dropna()
        if bandwidth_gbps:
            gbps, source = float(bandwidth_gbps), "--bandwidth"
        elif len(measured):
            gbps, source = float(measured.median()), f"median of {len(measured)} measured read bandwidth(s)"
        else:
            gbps, source = None, "none measured on this machine and no --bandwidth given"
        bandwidths[str(label)] = {"gbps": gbps, "source": source}
        parts.append(join_results(sub, gbps, table))
    return pd.concat(parts), bandwidths


def _common(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    out["machine"] = df["machine"]
    out["backend"] = _col(df, "backend.name", "?").fillna("?").astype(str)
    out["model"] = _col(df, "model.name", "?").fillna("?").astype(str)
    out["format"] = _col(df, "model.format", "?").fillna("?").astype(str)
    out["bits_per_weight"] = _num(df, "model.bits_per_weight")
    out["file_bytes"] = _num(df, "model.file_bytes")
    out["test"] = _col(df, "workload.name", "?").fillna("?").astype(str)
    out["kind"] = _col(df, "workload.kind", "?").fillna("?").astype(str)
    out["n_threads"] = _num(df, "settings.n_threads").astype("Int64")
    out["setting"] = _setting(df)
    out["n_params"] = _num(df, "model.n_params")
    out["ternary"], out["baseline"] = _format_facts(df, out["format"])
    out["tokens_per_s"] = _num(df, "metrics.tokens_per_s.median")
    out["tokens_per_s_mean"] = _num(df, "metrics.tokens_per_s.mean")
    out["tokens_per_s_sd"] = _num(df, "metrics.tokens_per_s.sd")
    out["unstable"] = _col(df, "metrics.tokens_per_s.unstable", False).fillna(False).astype(bool)
    out["peak_rss_bytes"] = _num(df, "metrics.peak_rss_bytes")
    out["tokens_per_s_q1"] = _num(df, "metrics.tokens_per_s.q1")
    out["tokens_per_s_q3"] = _num(df, "metrics.tokens_per_s.q3")
    out["bytes_per_token"] = _num(df, "cost.bytes_per_token")
    out["bandwidth_gbps"] = _num(df, "cost.bandwidth_gbps")
    out["roofline_tokens_per_s"] = _num(df, "cost.roofline_tokens_per_s")
    out["pct_of_roofline"] = _num(df, "cost.pct_of_roofline")
    kinds = [energy_provenance(s) for s in _col(df, "metrics.energy.source", None)]
    out["energy_kind"] = [k for k, _ in kinds]
    out["energy_detail"] = [d for _, d in kinds]
    jpt = _num(df, "metrics.energy.joules_per_token").fillna(_num(df, "cost.measured_j_per_token"))
    # Never a number for an unavailable reading, whatever the record holds.
    out["j_per_token"] = jpt.where(out["energy_kind"] != "unavailable")
    out["case_id"] = _col(df, "case_id", "").astype(str)
    return out


def _setting(df: pd.DataFrame) -> pd.Series:
    """What a case asked for besides its format (thread count, backend options, cache mode), as one key."""
    requested = [c for c in df.columns if c.startswith("settings.requested.")]
    parts = df[requested + [c for c in ("settings.cache",) if c in df]].astype(str) if len(df) else pd.DataFrame()
    return parts.apply(lambda row: "|".join(f"{k}={v}" for k, v in row.items()), axis=1) if len(parts.columns) \
        else pd.Series("", index=df.index)


def _format_facts(df: pd.DataFrame, formats: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(ternary, baseline) of each case's format: as its record says (the backend that ran it declared them),
    else, for records written before records carried them, as the installed backends declare that format."""
    facts = []
    for carried, baseline, fmt in zip(_col(df, "model.ternary", None), _col(df, "model.baseline", None), formats,
                                      strict=True):
        if carried is not None and not pd.isna(carried):
            facts.append((bool(carried), baseline if isinstance(baseline, str) else None))
        else:
            info = format_info(fmt)
            facts.append((bool(info and info.ternary), info.baseline if info else None))
    return (pd.Series([t for t, _ in facts], index=df.index, dtype=bool),
            pd.Series([b for _, b in facts], index=df.index, dtype=object))


SPEEDUP_COLUMNS = ["speedup", "speedup_lo", "speedup_hi", "speedup_method", "speedup_n", "speedup_unstable",
                   "speedup_text"]


def _sides(df: pd.DataFrame, metric: str) -> list[Side | None]:
    """Each row's samples of `metrics.<metric>` and what decides whether they pair with another row's."""
    cols = {k: _col(df, f"metrics.{metric}.{k}", None) for k in ("samples", "median", "unstable")}
    run, rounds, reps = (_col(df, c, None) for c in ("run_id", "settings.rounds", "settings.repetitions"))
    return [Side.of({"samples": s, "median": None if pd.isna(m) else m, "unstable": u}, r, n, k)
            for s, m, u, r, n, k in zip(cols["samples"], cols["median"], cols["unstable"], run, rounds, reps,
                                        strict=True)]


def _speedup(out: pd.DataFrame, df: pd.DataFrame, metric: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Each case over its baseline format's case in its group (same machine, backend, model, test, threads and
    settings), with its interval (tritbench.analysis.speedup): paired over the rounds when the baseline ran in
    the same run, else unpaired over the baseline's samples (pooled when several runs measured it). A baseline's
    own cases are 1.0 ('baseline'); NaN where the group has no baseline case or a side has no samples."""
    rows: dict[Any, dict] = {}
    sides = dict(zip(out.index, _sides(df, metric), strict=True))
    for _, g in out.groupby(GROUP, dropna=False, sort=False):
        for i, row in g.iterrows():
            side, base_fmt = sides[i], row["baseline"] or row["format"]
            if side is None:
                continue
            if base_fmt == row["format"]:
                rows[i] = {"speedup": 1.0, "speedup_method": "baseline"}
                continue
            bases = [sides[j] for j in g.index[g["format"] == base_fmt] if sides[j] is not None]
            if not bases:
                continue
            same_run = [b for b in bases if b.run_id is not None and b.run_id == side.run_id]
            s = speedup(same_run[-1] if same_run else Side.pool(bases), side, higher_is_better=higher_is_better)
            rows[i] = {"speedup": s.ratio, "speedup_lo": s.lo, "speedup_hi": s.hi, "speedup_method": s.description,
                       "speedup_n": s.n, "speedup_unstable": s.unstable}

    def column(name: str, default: Any, dtype: Any) -> pd.Series:
        return pd.Series([rows.get(i, {}).get(name, default) for i in out.index], index=out.index, dtype=dtype)

    res = pd.DataFrame({
        "speedup": column("speedup", np.nan, float), "speedup_lo": column("speedup_lo", np.nan, float),
        "speedup_hi": column("speedup_hi", np.nan, float), "speedup_method": column("speedup_method", None, object),
        "speedup_n": column("speedup_n", None, "Int64"), "speedup_unstable": column("speedup_unstable", False, bool),
    }, index=out.index)
    res["speedup_text"] = [speedup_text(r, lo, hi, u, reference=m == "baseline") for r, lo, hi, u, m in
                           zip(res["speedup"], res["speedup_lo"], res["speedup_hi"], res["speedup_unstable"],
                               res["speedup_method"], strict=True)]
    return res


def speedup_note(*frames: pd.DataFrame) -> str | None:
    """One line for under a table of speed-ups: how their intervals were made and what the marks mean; None when no
    frame holds a speed-up other than a baseline's own."""
    rows = pd.concat([f for f in frames if len(f) and "speedup_method" in f], ignore_index=True) \
        if any(len(f) and "speedup_method" in f for f in frames) else pd.DataFrame()
    if len(rows):
        rows = rows[rows["speedup_method"].notna() & (rows["speedup_method"] != "baseline")]
    if not len(rows):
        return None
    how = sorted({m.split(",")[0] for m in rows["speedup_method"]})
    how_text = ", else ".join({PAIRED: "paired over the rounds of one run", UNPAIRED: "unpaired bootstrap"}
                              .get(m, m) for m in how)
    parts = [f"Speed-ups with {DEFAULT_CONFIDENCE * 100:g} % intervals ({how_text})"]
    if rows["speedup_lo"].isna().any():
        parts.append(f"[no interval]: fewer than {min_samples(DEFAULT_CONFIDENCE)} rounds or samples per side")
    if rows["speedup_unstable"].any():
        parts.append(f"unstable: the interval spans more than {WIDE_FACTOR}x, or a side's samples are unstable")
    return "; ".join(parts) + "."


def format_rank(row: Mapping[str, Any]) -> tuple:
    """Baselines first, then the other formats by falling bits per weight, 1.58-bit last: the order charts and
    tables use."""
    bits = row.get("bits_per_weight")
    bits = -float(bits) if bits is not None and not (isinstance(bits, float) and math.isnan(bits)) else 0.0
    return (0 if not row.get("baseline") else 2 if row.get("ternary") else 1, bits)


def _ordered(out: pd.DataFrame) -> pd.DataFrame:
    rank = pd.Series([format_rank(r) for r in out.to_dict("records")], index=out.index, dtype=object)
    return out.assign(_rank=rank).sort_values(["machine", "backend", "model", "kind", "test", "_rank", "format"],
                                              kind="stable").drop(columns="_rank")


def _llm_cases(df: pd.DataFrame) -> pd.DataFrame:
    sub = df[_col(df, "workload.kind").isin(GENERATION_KINDS)]
    out = _common(sub)
    out["prompt_tokens_per_s"] = _num(sub, "metrics.prompt_tokens_per_s.median")
    out["gen_tokens_per_s"] = _num(sub, "metrics.gen_tokens_per_s.median")
    out["ttft_ms"] = _num(sub, "metrics.ttft_ms.median")
    for phase in ("load", "prefill", "decode"):
        out[f"{phase}_rss_bytes"] = _num(sub, f"metrics.memory.{phase}.peak_rss_bytes")
    out["modelled_j_per_token"] = _num(sub, "cost.modelled_j_per_token")
    out["path"] = _col(sub, "model.path", "").fillna("").astype(str)
    out = out.join(_speedup(out, sub, "tokens_per_s"))
    return _ordered(out).reset_index(drop=True)


def _kernel_cases(df: pd.DataFrame) -> pd.DataFrame:
    sub = df[_col(df, "workload.kind").isin(KERNEL_KINDS)]
    out = _common(sub)
    out["cache"] = _col(sub, "settings.cache", "").fillna("").astype(str)
    out["latency_ms"] = _num(sub, "metrics.latency_ms.median")
    out["latency_iqr"] = _num(sub, "metrics.latency_ms.iqr")
    out["latency_unstable"] = _col(sub, "metrics.latency_ms.unstable", False).fillna(False).astype(bool)
    out["weight_gbps"] = _num(sub, "metrics.weight_gbps.median")
    out["read_gbps"] = _num(sub, "metrics.read_bandwidth.gbps")
    out["pct_of_bandwidth"] = 100 * _num(sub, "metrics.bandwidth_fraction")
    out = out.join(_speedup(out, sub, "latency_ms", higher_is_better=False))
    return _ordered(out).reset_index(drop=True)


def headline(cases: pd.DataFrame) -> pd.DataFrame:
    """Per machine, backend, model, test and settings: the baseline (f16) against the fastest 1.58-bit format, with
    that format's speed-up and its interval."""
    rows = []
    if not len(cases):
        return pd.DataFrame()
    for key, g in cases.groupby(GROUP, dropna=False, sort=True):
        tern = g[g["ternary"]]
        if not len(tern) or tern["tokens_per_s"].isna().all():
            continue
        t = tern.loc[tern["tokens_per_s"].idxmax()]
        base = g[g["format"] == t["baseline"]]
        if not len(base):
            continue
        b = base.iloc[0]
        rows.append({
            **dict(zip(GROUP, key, strict=True)), "kind": b["kind"],
            "f16_tokens_per_s": b["tokens_per_s"], "ternary_format": t["format"],
            "ternary_tokens_per_s": t["tokens_per_s"], **{c: t[c] for c in SPEEDUP_COLUMNS},
            "f16_file_bytes": b["file_bytes"], "ternary_file_bytes": t["file_bytes"],
            "size_ratio": b["file_bytes"] / t["file_bytes"] if t["file_bytes"] else np.nan,
            "f16_energy": _energy_text(b), "ternary_energy": _energy_text(t),
            "f16_pct_of_roofline": b["pct_of_roofline"], "ternary_pct_of_roofline": t["pct_of_roofline"],
        })
    return pd.DataFrame(rows)


def _energy_text(row: Mapping[str, Any]) -> str:
    if row["energy_kind"] == "unavailable" or pd.isna(row["j_per_token"]):
        return f"{row['energy_kind']}"
    return f"{si(row['j_per_token'], 'J')}/token ({row['energy_kind']})"


def _failures(df: pd.DataFrame) -> pd.DataFrame:
    if not len(df):
        return pd.DataFrame()
    return pd.DataFrame({
        "machine": df["machine"],
        "backend": _col(df, "backend.name", "?").astype(str),
        "model": _col(df, "model.name", "?").astype(str),
        "format": _col(df, "model.format", "?").astype(str),
        "test": _col(df, "workload.name", "?").astype(str),
        "error": _col(df, "error", "").fillna("(no message)").astype(str),
    }).reset_index(drop=True)


def _machines(df: pd.DataFrame) -> pd.DataFrame:
    if not len(df):
        return pd.DataFrame()
    rows = []
    for label, g in df.groupby("machine", sort=True):
        r = g.iloc[0]

        def get(key: str, row: Mapping[str, Any] = r) -> Any:
            v = row.get(key)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        isa = get("machine.isa")
        rows.append({
            "machine": label, "id": get("machine.id"), "arch": get("machine.arch"),
            "cpu_model": get("machine.cpu_model"), "isa": " ".join(isa) if isinstance(isa, list) else isa,
            "cores": f"{get('machine.physical_cores')}/{get('machine.logical_cores')}",
            "ram": si(get("machine.ram_bytes"), "B"), "os": f"{get('machine.os') or ''} {get('machine.kernel') or ''}",
            "board": get("machine.board"), "hypervisor": get("machine.hypervisor"),
            "records": len(g), "failed": int((g["status"] != "ok").sum()) if "status" in g else 0,
        })
    return pd.DataFrame(rows)


def _projections(table, bandwidths: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    from tritbench.costmodel import projection_rows

    bws = {label: b["gbps"] for label, b in bandwidths.items() if b.get("gbps")}
    rows = []
    for r in projection_rows(table, bws):
        row = {k: r[k] for k in ("size", "n_params", "format", "bits_per_weight", "memory_bytes", "bytes_per_token",
                                 "paper_j_per_token", "arith_j_per_token", "total_j_per_token", "total_vs_fp16")}
        for label, tps in r["roofline_tokens_per_s"].items():
            row[f"roofline_tokens_per_s @ {label}"] = tps
        rows.append(row)
    return pd.DataFrame(rows)
