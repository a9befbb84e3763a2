"""The onnx backend's generation session: a GGUF model file run as the ternary decoder (decoder.py) for the
harness's pp/tg/pg workloads.

The packing follows the file: TQ1_0 linear layers run as `tern1.67`, anything else (TQ2_0, F16, ...) as
`tern2`; both compute the same numbers. Before it is benchmarked, every loaded decoder is checked against
the float64 reference (reference.py) on a few positions; a decoder that fails is not benchmarked.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import tempfile
import time

import numpy as np

from tritbench.backends.onnx import decoder, profile, reference, weights

KV_TYPES = tuple(decoder.KV_TYPES)
CHECK_PROMPT = 6
CHECK_STEPS = 2
CHECK_SEED = 1234
# Relative error of the logits against the float64 reference. Exact positions (f32 KV, and no op input near an
# int8 rounding tie so far, see reference.near_tie_rows): only float32 rounding (~5e-7 measured on tiny).
# Otherwise (f16 KV, whose rounding of Q/K/V onnxruntime and the reference do at different points, or after a
# near tie) a few int8 roundings may go the other way, which later layers amplify (2-4 % measured on tiny);
# a wrong RoPE layout or a wrong weight gives 40 % and more.
EXACT_LIMIT = 1e-4
LOOSE_LIMIT = 0.15


def packing_for(linear_type: str) -> str:
    """The op packing that reads the fewest bytes for a file's linear-layer type."""
    return "tern1.67" if linear_type == "TQ1_0" else "tern2"


def self_check(w: weights.DecoderWeights, runner: decoder.DecoderRunner, kv_type: str, packing: str) -> dict:
    """The decoder's last-position logits against the float64 reference over a short seeded trace (a prompt
    of CHECK_PROMPT tokens, then CHECK_STEPS decode steps), each within EXACT_LIMIT where the comparison is
    exact and LOOSE_LIMIT elsewhere; leaves the runner at position 0."""
    rng = np.random.default_rng(CHECK_SEED)
    prompt = rng.integers(0, w.vocab, CHECK_PROMPT).tolist()
    if w.bos_token is not None:
        prompt[0] = w.bos_token
    steps = rng.integers(0, w.vocab, CHECK_STEPS).tolist()
    ref = reference.ReferenceDecoder(w, CHECK_PROMPT + CHECK_STEPS, kv_type=kv_type)
    runner.reset()
    got, want = [runner.run(prompt)[-1]], [ref.run(prompt)[-1]]
    for t in steps:
        got.append(runner.run([t])[-1])
        want.append(ref.run([t])[-1])
    runner.reset()
    positions = [CHECK_PROMPT - 1 + i for i in range(len(got))]
    first_tie = min(ref.near_ties, default=len(prompt) + len(steps))
    # an 8-bit head quantizes its activations inside onnxruntime (MLAS), which the reference does not emulate
    # nbits2's MatMulNBits quantizes activations per block of 32, not per token as the op (and the reference) does
    exact = [kv_type == "f32" and not decoder.head_is_q8(w) and packing != decoder.NBITS and p < first_tie
             for p in positions]
    errors = [reference.rel_error(g, r) for g, r in zip(got, want, strict=True)]
    worst = max(e / (EXACT_LIMIT if x else LOOSE_LIMIT) for e, x in zip(errors, exact, strict=True))
    return {"against": "float64 numpy reference (exact op emulation)", "positions": positions,
            "rel_errors": errors, "exact_positions": sum(exact), "exact_limit": EXACT_LIMIT,
            "loose_limit": LOOSE_LIMIT, "passed": bool(worst <= 1.0)}


def release_freed_memory() -> None:
    """Give the load-time copies (dequantized weights, the serialized graph) back to the OS: glibc keeps freed
    heap pages, which would count in the prefill and decode phases' RSS (about 130 MB on `small`)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class OnnxDecoderSession:
    """A GenerationSession (tritbench.plugin) over the ternary decoder, batch 1."""

    weights_mapped = True  # onnxruntime memory-maps the initializers (decoder.session_for)

    def __init__(self, model_path: str, n_threads: int, options: dict, n_ctx: int, packing: str | None = None):
        import onnxruntime as ort

        from tritbench.backends.onnx import native

        kv_type = str(options.get("kv_type") or "f16")
        if kv_type not in KV_TYPES:
            raise weights.DecoderError(f"kv_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
        want_ctx = options.get("n_ctx")
        if want_ctx and want_ctx < n_ctx:
            raise ValueError(f"n_ctx={want_ctx} is smaller than the {n_ctx} tokens the workloads need "
                             "(depth + prompt + generation)")
        ctx = int(want_ctx or n_ctx)
        profile_steps = options.get("op_profile")
        profile_depth = int(options.get("op_profile_depth") or 0) if profile_steps else 0
        ctx = max(ctx, CHECK_PROMPT + CHECK_STEPS, 1 + profile_depth + (profile_steps or 0))
        w = weights.from_gguf(model_path)
        packing = packing or packing_for(w.linear_type)  # the planned format; else what the file's type reads best
        # onnxruntime maps the weights from the written file; the mapping outlives the deleted file
        with tempfile.TemporaryDirectory(prefix="tritbench-decoder-") as folder:
            attention = str(options.get("attention") or "tritbench")
            model = decoder.build_decoder(w, packing, max_len=ctx, kv_type=kv_type, folder=folder, attention=attention)
            self.session = decoder.session_for(
                model, n_threads, folder=folder,
                profile_prefix=os.path.join(tempfile.gettempdir(), "tritbench-op-profile") if profile_steps else None)
        del model
        self.runner = decoder.DecoderRunner(self.session, w, ctx, kv_type)
        self.check = self_check(w, self.runner, kv_type, packing)
        if not self.check["passed"]:
            err = max(self.check["rel_errors"])
            raise weights.DecoderError(f"the decoder does not compute the model: relative error {err:.3g} "
                                       "against the float64 reference")
        shares = self._profile(w, profile_steps, profile_depth) if profile_steps else None
        self.n_vocab, self.bos_token = w.vocab, w.bos_token
        self._settings = {
            "n_threads": n_threads,
            "n_ctx": self.runner.n_ctx,
            "kv_type": kv_type,
            "attention": decoder.ATTENTIONS[attention],
            "packing": packing,
            "kernel_path": "onnxruntime MatMulNBits" if packing == decoder.NBITS else native.kernel_name(),
            "onnxruntime": ort.__version__,
            "architecture": w.arch,
            "file_linear_type": w.linear_type,
            "head": decoder.HEAD_COMPUTE[decoder.head_kind(w)],
            "logits": "last position of each batch (as llama.cpp's llama_batch_get_one)",
            "bytes_per_token": decoder.bytes_per_token(w, packing, kv_type),
            "parity_check": self.check,
        }
        if shares is not None:
            self._settings["op_profile"] = shares
        self._counts = {"n_prompt": 0, "n_gen": 0}
        del w
        release_freed_memory()

    def _profile(self, w: weights.DecoderWeights, steps: int, depth: int) -> dict:
        """Time shares of `steps` decode steps from depth 1 + `depth` (a prompt of one token and `depth` seeded
        ones) under onnxruntime's profiler, then profiling off and as many steps on the op library's own
        clock: the timed runs that follow are neither profiled nor clocked."""
        from tritbench.backends.onnx import native

        rng = np.random.default_rng(CHECK_SEED)
        prompt = [w.bos_token if w.bos_token is not None else 0, *rng.integers(0, w.vocab, depth).tolist()]
        self.runner.reset()
        self.runner.run(prompt, read=False)
        for t in rng.integers(0, w.vocab, steps).tolist():
            self.runner.run([t], read=False)
        path = self.session.end_profiling()
        try:
            with open(path) as f:
                events = json.load(f)
        finally:
            os.unlink(path)
        shares = profile.step_shares(events, steps)
        shares["depth"] = len(prompt)  # KV depth before the first profiled step
        # the same steps again, unprofiled, on the op library's own clock
        self.runner.reset()
        self.runner.run(prompt, read=False)
        step_ns = []
        native.op_clock_start()
        try:
            for t in rng.integers(0, w.vocab, steps).tolist():
                t0 = time.perf_counter_ns()
                self.runner.run([t], read=False)
                step_ns.append(time.perf_counter_ns() - t0)
        finally:
            op_ns = native.op_clock_stop()
        self.runner.reset()
        shares["op_clock"] = profile.clock_shares(op_ns, step_ns, shares["matmul_ops"])
        return shares

    def effective_settings(self) -> dict:
        return self._settings

    def reset(self) -> None:
        self.runner.reset()

    def prefill(self, tokens: list[int]) -> None:
        self.runner.run(tokens, read=False)
        self._counts["n_prompt"] += len(tokens)

    def decode(self, token: int) -> None:
        self.runner.run([token], read=False)
        self._counts["n_gen"] += 1

    def reset_counters(self) -> None:
        self._counts = {"n_prompt": 0, "n_gen": 0}

    def counters(self) -> dict:
        """Tokens this session was given since reset_counters (it has no timer of its own)."""
        return {**self._counts, "prompt_ms": None, "gen_ms": None}

    def check_counters(self, n_prompt: int, n_gen: int, counters: dict) -> str | None:
        for key, want in (("n_prompt", n_prompt), ("n_gen", n_gen)):
            if counters.get(key) != want:
                return f"backend counted {key}={counters.get(key)} but the workload asked for {want}"
        return None

    def close(self) -> None:
        self.runner = None
        self.session = None
