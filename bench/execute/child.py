"""The child process that measures one variant: `python -m tritbench.execute.child JOB.json`.

A `GenerationJob` loads the model once, then for each workload runs warmups and repetitions, timing only
the backend's prefill/decode calls; a `KernelJob` builds each layer and times batches of calls. After
loading and after each workload the child rewrites its `ChildResult`, so the parent keeps what was
measured even if the backend crashes. It imports only what it measures with (tests/test_worker_imports.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from tritbench import plugin
from tritbench.execute.job import ERROR_TAG, PARENT_ENV, ChildResult, GenerationJob, Job, KernelJob, WorkloadResult
from tritbench.measure.energy import select_meter
from tritbench.measure.memory import PhaseMemory, merge_peaks, process_peak_bytes
from tritbench.plan.workloads import Workload

SIZING_S = 0.02  # warm kernel calls are timed together this long to size a repetition


def die_with_parent() -> None:
    """Linux: the kernel kills this child when the runner that started it dies, however it dies (a killed
    runner must not leave a child keeping a core busy); and if the runner is already gone, stop now."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG (linux/prctl.h)
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit() and os.getppid() != int(parent):
        sys.exit(4)


def current_rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _tokens(rng: np.random.Generator, n: int, n_vocab: int, bos: int | None, first: bool) -> list[int]:
    """A fresh random token trace (a new one every repetition, so no cache can reuse a prefix)."""
    toks = rng.integers(0, n_vocab, size=n).tolist()
    if first and bos is not None and toks:
        toks[0] = bos
    return toks


def run_repetition(session, w: Workload, rng: np.random.Generator, mem: PhaseMemory, memory: dict,
                   meter=None) -> dict:
    """One repetition; `memory` collects each phase's peak snapshot (field-wise max over repetitions)."""
    session.reset()
    if w.depth:
        session.prefill(_tokens(rng, w.depth, session.n_vocab, session.bos_token, True))
    session.reset_counters()
    rep: dict = {}
    if meter is not None:  # the depth prefill above stays outside the energy window
        meter.start()
    cpu0 = time.process_time()
    if w.n_prompt:
        toks = _tokens(rng, w.n_prompt, session.n_vocab, session.bos_token, w.depth == 0)
        mem.start_phase()
        t0 = time.perf_counter_ns()
        session.prefill(toks)
        rep["prefill_s"] = (time.perf_counter_ns() - t0) / 1e9
        memory["prefill"] = merge_peaks(memory.get("prefill"), mem.snapshot())
    if w.n_gen:
        first = w.depth == 0 and w.n_prompt == 0
        toks = _tokens(rng, w.n_gen, session.n_vocab, session.bos_token, first)
        lat = []
        mem.start_phase()
        for tok in toks:
            t0 = time.perf_counter_ns()
            session.decode(tok)
            lat.append((time.perf_counter_ns() - t0) / 1e9)
        rep["decode_s"] = lat
        memory["decode"] = merge_peaks(memory.get("decode"), mem.snapshot())
    rep["cpu_s"] = time.process_time() - cpu0
    if meter is not None:
        rep["energy"] = meter.stop().to_dict()
    rep["counters"] = session.counters()
    return rep


def measure_generation(backend, job: GenerationJob, result: ChildResult, out: Path) -> None:
    mem = PhaseMemory()
    mem.start_phase()
    t0 = time.perf_counter()
    # a derived format is made by the backend from the file it is given: only then does it get the format
    derived = {"fmt": job.made_format} if job.made_format else {}
    session = backend.open(job.model_path, job.n_threads, job.options, job.n_ctx, **derived)
    result.load_s = time.perf_counter() - t0
    result.memory = {"load": mem.snapshot(), "per_phase_peaks": mem.per_phase_peaks,
                     "mmap": session.weights_mapped}
    result.rss_after_load_bytes = current_rss_bytes()
    result.settings = session.effective_settings()
    result.peak_rss_bytes = mem.peak()
    meter = select_meter(job.energy)
    result.write(out)
    rng = np.random.default_rng(job.seed)
    for w in job.workloads:
        entry = result.workloads[w.name] = WorkloadResult()
        if hasattr(session, "measure"):  # a backend that times itself (a peer's llama-bench): whole workloads
            entry.reps, entry.settings = session.measure(w.n_prompt, w.n_gen, w.depth, job.warmups, job.reps)
            result.write(out)
            continue
        for _ in range(job.warmups):
            run_repetition(session, w, rng, mem, {})
        for _ in range(job.reps):
            rep = run_repetition(session, w, rng, mem, entry.memory, meter)
            entry.reps.append(rep)
            entry.error = session.check_counters(w.n_prompt, w.n_gen, rep["counters"])
            if entry.error:
                break
        result.peak_rss_bytes = mem.peak()
        result.write(out)
    session.close()
    meter.close()  # a streaming sampler (powermetrics) stops now rather than at exit


def run_kernel_repetition(session, calls: int, meter=None) -> dict:
    """`calls` back-to-back calls; per-call wall, process CPU and calling-thread CPU time."""
    if meter is not None:
        meter.start()
    c0, th0 = time.process_time_ns(), time.thread_time_ns()
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        session.run()
    wall = time.perf_counter_ns() - t0
    cpu, thread = time.process_time_ns() - c0, time.thread_time_ns() - th0
    rep = {"calls": calls, "latency_s": wall / calls / 1e9, "cpu_s": cpu / calls / 1e9,
           "thread_cpu_s": thread / calls / 1e9}
    if meter is not None:
        rep["energy"] = meter.stop().to_dict()
    return rep


def calls_per_repetition(run, min_rep_s: float, clock=time.perf_counter) -> int:
    """Calls that make a repetition last `min_rep_s`. The first call pays for first touch and lazy set-up (a hot
    4096x4096 GEMV's took 4-5x a warm call, which made repetitions a fifth as long as asked), so it is left out:
    the size comes from warm calls timed together for at least SIZING_S (or min_rep_s if shorter)."""
    run()
    n, t0 = 0, clock()
    while True:
        run()
        n += 1
        elapsed = clock() - t0
        if elapsed >= min(SIZING_S, min_rep_s):
            break
    return max(1, int(np.ceil(min_rep_s / max(elapsed / n, 1e-9))))


def measure_layer(backend, job: KernelJob, w: Workload, entry: WorkloadResult, meter) -> None:
    """Open the layer, size repetitions to at least `min_rep_s` (calls are short), warm up, measure."""
    session = backend.open_kernel(job.format, w.M, w.K, w.N, job.n_threads, job.options, job.seed,
                                  job.min_total_bytes)
    try:
        entry.weight_bytes = session.weight_bytes
        entry.copies = session.copies
        entry.settings = session.effective_settings()
        calls = calls_per_repetition(session.run, job.min_rep_s) if job.min_rep_s > 0 else 1
        # at least one pass over every weight copy per repetition, so cold really is cold
        calls = max(session.copies, calls)
        for _ in range(job.warmups):
            run_kernel_repetition(session, calls)
        for _ in range(job.reps):
            entry.reps.append(run_kernel_repetition(session, calls, meter))
    finally:
        session.close()


def measure_kernels(backend, job: KernelJob, result: ChildResult, out: Path) -> None:
    meter = select_meter(job.energy)
    result.rss_after_load_bytes = current_rss_bytes()
    result.settings = {"n_threads": job.n_threads}
    result.peak_rss_bytes = process_peak_bytes()
    result.write(out)
    for w in job.workloads:
        entry = result.workloads[w.name] = WorkloadResult()
        measure_layer(backend, job, w, entry, meter)
        result.peak_rss_bytes = process_peak_bytes()
        result.write(out)
    meter.close()


MEASURE = {GenerationJob: measure_generation, KernelJob: measure_kernels}


def main(job_path: str) -> int:
    job = Job.from_json(Path(job_path).read_text())
    result = ChildResult()
    backend = plugin.load(job.backend)()
    result.backend_info = backend.info()
    MEASURE[type(job)](backend, job, result, Path(job.result_path))
    return 0


if __name__ == "__main__":
    die_with_parent()
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as exc:  # reported to the parent through stderr and the exit code
        detail = str(exc) or ("out of memory" if isinstance(exc, MemoryError) else "no message")
        print(f"{ERROR_TAG} {type(exc).__name__}: {detail}", file=sys.stderr, flush=True)
        sys.exit(3)
