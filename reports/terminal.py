"""Printers over result records: a llama-bench-like markdown table, CSV, JSON and JSONL."""

from __future__ import annotations

import io
import json

import pandas as pd

SAMPLE_KEYS = ("samples",)


def _size(n: float | None) -> str:
    if n is None:
        return ""
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def _params(n: float | None) -> str:
    if not n:
        return ""
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


def _baseline_key(rec: dict) -> tuple:
    s = rec.get("settings", {})
    return (
        rec["backend"]["name"],
        rec["model"].get("name"),
        rec["workload"]["name"],
        s.get("n_threads"),
        json.dumps({k: v for k, v in s.get("requested", {}).items()}, sort_keys=True, default=str),
    )


def speedups_over_f16(records: list[dict]) -> dict[int, float]:
    """Index -> tokens/s ratio over the F16 record of the same backend, model, test and settings."""
    f16 = {
        _baseline_key(r): r["metrics"]["tokens_per_s"]["median"]
        for r in records
        if r["status"] == "ok" and r["model"].get("format") == "f16"
    }
    out = {}
    for i, r in enumerate(records):
        base = f16.get(_baseline_key(r)) if r["status"] == "ok" else None
        if base:
            out[i] = r["metrics"]["tokens_per_s"]["median"] / base
    return out


def _is_kernel(rec: dict) -> bool:
    return rec["workload"]["kind"] in ("gemv", "gemm")


def _kernel_key(rec: dict) -> tuple:
    s = rec.get("settings", {})
    return (rec["backend"]["name"], rec["workload"]["name"], s.get("n_threads"), s.get("cache"))


def kernel_speedups(records: list[dict], baseline: str = "fp32") -> dict[int, float]:
    """Index -> latency ratio of the `baseline` format of the same backend, test, threads and cache
    over this record (above 1: faster than the baseline)."""
    base = {
        _kernel_key(r): r["metrics"]["latency_ms"]["median"]
        for r in records
        if r["status"] == "ok" and _is_kernel(r) and r["model"].get("format") == baseline
    }
    return {
        i: base[_kernel_key(r)] / r["metrics"]["latency_ms"]["median"]
        for i, r in enumerate(records)
        if r["status"] == "ok" and _is_kernel(r) and _kernel_key(r) in base
    }


def kernel_rows(records: list[dict]) -> list[dict]:
    """Kernel cases: latency, weight GB/s, share of the probed read bandwidth, speed-up over FP32."""
    ups = kernel_speedups(records)
    rows = []
    for i, r in enumerate(records):
        if not _is_kernel(r):
            continue
        m, ok = r.get("metrics", {}), r["status"] == "ok"
        lat = m.get("latency_ms", {})
        frac = m.get("bandwidth_fraction")
        rows.append({
            "backend": r["backend"]["name"],
            "format": r["model"].get("format", ""),
            "bits/w": f"{r['model']['bits_per_weight']:.2f}" if r["model"].get("bits_per_weight") else "",
            "threads": str(r.get("settings", {}).get("n_threads", "")),
            "cache": str(r.get("settings", {}).get("cache", "")),
            "test": r["workload"]["name"],
            "latency ms": (f"{lat['median']:.4f} ± {lat['iqr']:.4f}" + (" (unstable)" if lat["unstable"] else ""))
            if ok else "failed",
            "GB/s": f"{m['weight_gbps']['median']:.2f}" if ok else "",
            "% read bw": f"{100 * frac:.0f} %" if ok and frac is not None else "",
            "vs fp32": f"{ups[i]:.2f}x" if i in ups else "",
        })
    return rows


def table_rows(records: list[dict]) -> list[dict]:
    """The terminal table's rows: llama-bench's columns plus peak memory and speed-up over F16."""
    ups = speedups_over_f16(records)
    rows = []
    for i, r in enumerate(records):
        if _is_kernel(r):
            continue
        m = r.get("metrics", {})
        tps = m.get("tokens_per_s")
        if r["status"] == "ok":
            cell = f"{tps['mean']:.2f} ± {tps['sd']:.2f}" + (" (unstable)" if tps["unstable"] else "")
        else:
            cell = "failed"
        rows.append({
            "model": r["model"].get("name", ""),
            "format": r["model"].get("format", ""),
            "size": _size(r["model"].get("file_bytes")),
            "params": _params(r["model"].get("n_params")),
            "backend": r["backend"]["name"],
            "threads": str(r.get("settings", {}).get("n_threads", "")),
            "test": r["workload"]["name"],
            "t/s": cell,
            "peak RSS": _size(m.get("peak_rss_bytes")),
            "vs f16": f"{ups[i]:.2f}x" if i in ups else "",
        })
    return rows


def _markdown_table(rows: list[dict], left: set[str]) -> list[str]:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}

    def line(vals: dict) -> str:
        cells = [vals[c].ljust(widths[c]) if c in left else vals[c].rjust(widths[c]) for c in cols]
        return "| " + " | ".join(cells) + " |"

    sep = "| " + " | ".join("-" * widths[c] if c in left else "-" * (widths[c] - 1) + ":" for c in cols) + " |"
    return [line({c: c for c in cols}), sep] + [line(r) for r in rows]


def to_markdown(records: list[dict]) -> str:
    if not records:
        return "no results\n"
    out: list[str] = []
    llm, kernel = table_rows(records), kernel_rows(records)
    if llm:
        out += _markdown_table(llm, {"model", "format", "backend", "test"})
    if kernel:
        out += ([""] if out else []) + _markdown_table(kernel, {"backend", "format", "cache", "test"})
    failures = [f"- {r['model'].get('name')} {r['model'].get('format')} {r['workload']['name']}: {r['error']}"
                for r in records if r["status"] != "ok"]
    if failures:
        out += ["", "failed cases:"] + failures
    return "\n".join(out) + "\n"


def _without_samples(obj):
    if isinstance(obj, dict):
        return {k: _without_samples(v) for k, v in obj.items() if k not in SAMPLE_KEYS}
    return obj


def to_csv(records: list[dict]) -> str:
    """One row per case; raw samples and nested lists are left out (they are in the JSON)."""
    if not records:
        return ""
    df = pd.json_normalize([_without_samples(r) for r in records], sep=".")
    df = df[[c for c in df.columns if not df[c].map(lambda v: isinstance(v, (list, dict))).any()]]
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()


def render(records: list[dict], fmt: str) -> str:
    if fmt == "md":
        return to_markdown(records)
    if fmt == "csv":
        return to_csv(records)
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records)
    raise ValueError(f"unknown output format {fmt}")
