"""Where a decode step's time goes, from onnxruntime's own profiler (its Chrome-trace JSON of `model_run` and
per-node `kernel_time` events): the share of each op type, of the matmuls (the ternary layers and the head)
and of what is neither (norms, attention, casts, onnxruntime's own work between nodes).

The profiler times every node, which costs a little per node, so the profiled steps are run before timing
and never count as measurements; the shares are what the record keeps. That cost lands in the shares too (on
`1b` a profiled step took about 1 ms more than an unprofiled one), so the op library's own clock measures the
matmul share of unprofiled steps as well (clock_shares): the time inside its own ops over the steps' wall time.
"""

from __future__ import annotations

import statistics

# op types that are matrix products: the ternary layers, the F16 head, the 8-bit head, MatMulNBits layers
MATMUL_OPS = ("TernaryMatMul", "F16MatMul", "MatMulNBits", "MatMul")


def step_shares(events: list[dict], steps: int) -> dict:
    """Time shares of the last `steps` runs (`model_run` events) of a profile: by op type, matmul versus the
    rest, and the part no node accounts for ("framework"). Raises ValueError when the profile has fewer runs."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if steps < 1 or len(runs) < steps:
        raise ValueError(f"the profile holds {len(runs)} runs, not the {steps} asked for")
    runs = runs[-steps:]
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    by_op: dict[str, float] = {}
    in_nodes = 0.0
    total = 0.0
    for run in runs:
        start, end = run["ts"], run["ts"] + run["dur"]
        total += run["dur"]
        for e in nodes:
            if start <= e["ts"] and e["ts"] + e["dur"] <= end:
                op = e.get("args", {}).get("op_name", "?")
                by_op[op] = by_op.get(op, 0.0) + e["dur"]
                in_nodes += e["dur"]
    if total <= 0:
        raise ValueError("the profiled runs took no measurable time")
    matmul = sum(us for op, us in by_op.items() if op in MATMUL_OPS)
    shares = {op: us / total for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])}
    return {
        "steps": steps,
        "step_us_median": statistics.median(r["dur"] for r in runs),
        "by_op_type": shares,
        "matmul_share": matmul / total,
        "non_matmul_share": 1.0 - matmul / total,
        "framework_share": max(0.0, total - in_nodes) / total,
        "matmul_ops": [op for op in MATMUL_OPS if op in by_op],
        "basis": "onnxruntime profiler (node kernel_time within model_run), untimed steps before the benchmark",
    }


# the ops the library's own clock times (tb_ort.c)
CLOCKED_OPS = ("TernaryMatMul", "F16MatMul")


def clock_shares(op_ns: int, step_ns: list[int], matmul_ops: list[str]) -> dict:
    """The share of unprofiled decode steps (wall time, as the benchmark times a step) spent inside the
    library's own ops. It is the matmul share when every matmul of the graph is one of them (`matmul_ops`, the
    profiler's list); otherwise (an 8-bit MatMulNBits head, nbits2) no non-matmul share is claimed."""
    total = sum(step_ns)
    if not step_ns or total <= 0:
        raise ValueError("the clocked steps took no measurable time")
    ours = op_ns / total
    out = {"steps": len(step_ns), "step_us_median": statistics.median(step_ns) / 1000,
           "ops": list(CLOCKED_OPS), "ops_share": ours,
           "basis": "the op library's own clock inside TernaryMatMul and F16MatMul over the wall time of "
                    "unprofiled decode steps (Python's loop included), untimed steps before the benchmark"}
    others = [op for op in matmul_ops if op not in CLOCKED_OPS]
    if others:
        out["non_matmul_share"] = None
        out["why_not"] = f"matmuls outside the library's ops ({', '.join(others)}) are not on its clock"
    else:
        out["non_matmul_share"] = 1.0 - ours
    return out
