"""Turn the raw repetition samples a worker returns into a case's metrics: pure functions."""

from __future__ import annotations

from tritbench.analysis.stats import summarize
from tritbench.measure.energy import EnergyReading, energy_metrics
from tritbench.plan.workloads import Workload


def _energy(reps: list[dict], tokens: int, idle: EnergyReading | None) -> dict:
    readings = [EnergyReading.from_dict(r["energy"]) for r in reps if "energy" in r]
    if not readings:
        return {"source": "unavailable:no energy reading was taken"}
    return energy_metrics(readings, tokens=tokens, idle=idle)


def _memory(children: list[dict]) -> dict:
    return {
        "peak_rss_bytes": max(c["peak_rss_bytes"] for c in children),
        "rss_after_load_bytes": max(c["rss_after_load_bytes"] for c in children),
    }


def kernel_metrics(w: Workload, reps: list[dict], weight_bytes: int, children: list[dict],
                   read_bandwidth: dict | None, idle: EnergyReading | None = None) -> dict:
    """Metrics of a gemv/gemm case: latency per call, CPU time, weight bytes streamed per second,
    ternary ops (one per weight and activation row: an add, a subtract or a skip) per second, and
    the share of the probed read bandwidth those weight bytes represent."""
    if not reps:
        raise ValueError("no repetitions")
    lat = [r["latency_s"] for r in reps]
    m: dict = {
        "latency_ms": summarize([x * 1e3 for x in lat], higher_is_better=False),
        "cpu_ms": summarize([r["cpu_s"] * 1e3 for r in reps], higher_is_better=False),
        "thread_cpu_ms": summarize([r["thread_cpu_s"] * 1e3 for r in reps], higher_is_better=False),
        "weight_gbps": summarize([weight_bytes / x / 1e9 for x in lat]),
        "ternary_ops_per_s": summarize([w.M * w.K * w.N / x for x in lat]),
        # rows of activations per second: the layer's share of a model's tokens/s
        "tokens_per_s": summarize([w.M / x for x in lat]),
        "calls_per_repetition": reps[0]["calls"],
    }
    if read_bandwidth:
        m["read_bandwidth"] = read_bandwidth
        m["bandwidth_fraction"] = m["weight_gbps"]["median"] / read_bandwidth["gbps"]
    else:
        m["bandwidth_fraction"] = None
    m.update(_memory(children))
    m["energy"] = _energy(reps, sum(w.M * r["calls"] for r in reps), idle)
    return m


def llm_metrics(w: Workload, reps: list[dict], children: list[dict], idle: EnergyReading | None = None,
                read_bandwidth: dict | None = None) -> dict:
    """Metrics of a pp/tg/pg case from its repetitions (wall-clock times of the backend's calls,
    the backend's own counters) and from the child processes that ran them (load, memory)."""
    if not reps:
        raise ValueError("no repetitions")
    tps, internal_tps = [], []
    for r in reps:
        wall = r.get("prefill_s", 0.0) + sum(r.get("decode_s", []))
        tps.append((w.n_prompt + w.n_gen) / wall)
        c = r.get("counters") or {}
        own_ms = (c.get("prompt_ms") or 0.0) * bool(w.n_prompt) + (c.get("gen_ms") or 0.0) * bool(w.n_gen)
        if own_ms > 0:
            internal_tps.append((w.n_prompt + w.n_gen) / own_ms * 1e3)
    m: dict = {"tokens_per_s": summarize(tps)}
    if w.n_prompt:
        m["prompt_tokens_per_s"] = summarize([w.n_prompt / r["prefill_s"] for r in reps])
        # The prompt's last logits are the first token's: prefill time is the time to first token.
        m["ttft_ms"] = summarize([r["prefill_s"] * 1e3 for r in reps], higher_is_better=False)
    if w.n_gen:
        m["gen_tokens_per_s"] = summarize([w.n_gen / sum(r["decode_s"]) for r in reps])
        if any(r.get("decode_split") == "even" for r in reps):
            # the backend timed each generation as a whole: one mean per repetition, not a per-token spread
            m["token_latency_ms"] = {**summarize([sum(r["decode_s"]) / len(r["decode_s"]) * 1e3 for r in reps],
                                                 higher_is_better=False), "basis": "mean per repetition"}
        else:
            m["token_latency_ms"] = summarize([t * 1e3 for r in reps for t in r["decode_s"]],
                                              higher_is_better=False)
    if all("cpu_s" in r for r in reps):  # a self-timed peer process's CPU time per repetition is unknown
        m["cpu_ms"] = summarize([r["cpu_s"] * 1e3 for r in reps], higher_is_better=False)
    if len(internal_tps) == len(reps):
        own = summarize(internal_tps)
        m["backend_timings"] = {
            "tokens_per_s": own,
            # How far the harness's wall clock is from the backend's own timer (1.0 = identical).
            "wall_over_backend": m["tokens_per_s"]["median"] / own["median"],
        }
    if read_bandwidth:
        m["read_bandwidth"] = read_bandwidth  # probed at this case's thread count, for the roofline
    m["load_ms"] = summarize([c["load_s"] * 1e3 for c in children], higher_is_better=False)
    m.update(_memory(children))
    m["energy"] = _energy(reps, (w.n_prompt + w.n_gen) * len(reps), idle)
    return m
