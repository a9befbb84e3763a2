"""The llama.cpp backend: loads a GGUF with the settings asked for and runs pp/tg steps.

It drives llama.cpp's C API directly (as llama-bench does) rather than `Llama.generate`, which
reuses a matching KV prefix and samples. Timing, statistics and storage belong to the harness.
"""

from __future__ import annotations

import ctypes
import json
import os
from typing import ClassVar

from tritbench.plugin import FormatInfo, Option

# ggml log levels (ggml.h): only warnings and errors reach the child's stderr log.
_LOG_WARN = 3
_LOG_ERROR = 4
_log_callback = None  # the ctypes callback must outlive every llama.cpp call


def _llama():
    import llama_cpp

    return llama_cpp


def _quiet_logs(llama_cpp) -> None:
    global _log_callback
    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback
    def forward(level, text, user_data):
        if level in (_LOG_WARN, _LOG_ERROR):
            os.write(2, text or b"")

    _log_callback = forward
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def _lib_dir() -> str:
    """The folder llama-cpp-python loads its libraries from: LLAMA_CPP_LIB_PATH (a cross-built or shared
    build, as .ci/arm-llama.sh sets it) or the package's own lib/."""
    return os.environ.get("LLAMA_CPP_LIB_PATH") or os.path.join(os.path.dirname(_llama().__file__), "lib")


def _build_info(lib_dir: str) -> dict | None:
    """What a build recipe wrote beside the libraries (.ci/arm-llama.sh: target, flags, compiler), if any."""
    try:
        with open(os.path.join(lib_dir, "build.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _lib_string(lib_name: str, symbol: str) -> str | None:
    """A version string exported by one of the loaded shared libraries (None if absent)."""
    path = os.path.join(_lib_dir(), lib_name)
    try:
        fn = getattr(ctypes.CDLL(path), symbol)
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode(errors="replace")


class LlamaCppBackend:
    name: ClassVar[str] = "llamacpp"
    # GGML types: bits per weight from gguf's block sizes; speed-ups are over F16 of the same model.
    formats: ClassVar[dict[str, FormatInfo]] = {
        "f16": FormatInfo(ggml_type="F16"),
        "q8_0": FormatInfo(ggml_type="Q8_0", baseline="f16"),
        "q4_0": FormatInfo(ggml_type="Q4_0", baseline="f16"),
        "tq1_0": FormatInfo(ternary=True, ggml_type="TQ1_0", baseline="f16"),
        "tq2_0": FormatInfo(ternary=True, ggml_type="TQ2_0", baseline="f16"),
    }
    workload_kinds: ClassVar[tuple[str, ...]] = ("pp", "tg", "pg")
    libraries: ClassVar[tuple[str, ...]] = ("llama-cpp-python",)
    # llama-bench's defaults, except that every value is set explicitly and recorded.
    options: ClassVar[dict[str, Option]] = {
        "n_batch": Option(int, 2048, "logical batch: most tokens per llama_decode call", minimum=1),
        "n_ubatch": Option(int, 512, "physical batch: most tokens per compute graph", minimum=1),
        "threads_batch": Option(int, None, "threads for prompt batches (default: the -t value)", minimum=1),
        "flash_attn": Option(bool, True, "flash attention (llama-bench's auto turns it on for CPU)"),
        "mmap": Option(bool, True, "memory-map the model file instead of reading it into memory"),
        "n_ctx": Option(int, None, "context size (default: depth + n_prompt + n_gen of the largest workload)",
                        minimum=1),
    }

    def info(self) -> dict:
        llama_cpp = _llama()
        return {
            "version": llama_cpp.__version__,
            "llama_cpp_commit": _lib_string("libggml-base.so", "ggml_commit"),
            "ggml_version": _lib_string("libggml-base.so", "ggml_version"),
            "llama_version": _lib_string("libllama.so", "llama_version"),
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
            # which library ran (a gate hashes `*_library` files) and, where recorded, how it was built
            "llama_library": os.path.join(_lib_dir(), "libllama.so"),
            "build": _build_info(_lib_dir()),
        }

    def open(self, model_path: str, n_threads: int, options: dict, n_ctx: int) -> LlamaCppSession:
        return LlamaCppSession(model_path, n_threads, options, n_ctx)


class LlamaCppSession:
    """One model and one context. Tokens go in through `llama_batch_get_one`, so positions follow
    the KV cache and `reset()` restarts at position 0."""

    def __init__(self, model_path: str, n_threads: int, options: dict, n_ctx: int):
        llama_cpp = self._l = _llama()
        _quiet_logs(llama_cpp)
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0
        mparams.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if options["mmap"] else llama_cpp.LLAMA_LOAD_MODE_NONE
        self.model = llama_cpp.llama_model_load_from_file(model_path.encode(), mparams)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load the model: {model_path}")
        if options["n_ctx"] and options["n_ctx"] < n_ctx:  # else llama.cpp fails later, with a counter mismatch
            raise ValueError(f"n_ctx={options['n_ctx']} is smaller than the {n_ctx} tokens the workloads need "
                             "(depth + prompt + generation)")
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = options["n_ctx"] or n_ctx
        cparams.n_batch = options["n_batch"]
        cparams.n_ubatch = options["n_ubatch"]
        cparams.n_threads = n_threads
        cparams.n_threads_batch = options["threads_batch"] or n_threads
        fa_on, fa_off = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED, llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cparams.flash_attn_type = fa_on if options["flash_attn"] else fa_off
        cparams.no_perf = False
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise RuntimeError("llama.cpp could not create a context with these settings")
        self._load_mode = mparams.load_mode
        self._flash_attn = bool(options["flash_attn"])
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        bos = llama_cpp.llama_vocab_bos(vocab)
        self.bos_token = bos if bos >= 0 else None
        self.n_batch = llama_cpp.llama_n_batch(self.ctx)
        self.weights_mapped = self._load_mode == llama_cpp.LLAMA_LOAD_MODE_MMAP

    def effective_settings(self) -> dict:
        lib, ctx = self._l, self.ctx
        return {
            "n_threads": lib.llama_n_threads(ctx),
            "n_threads_batch": lib.llama_n_threads_batch(ctx),
            "n_ctx": lib.llama_n_ctx(ctx),
            "n_batch": lib.llama_n_batch(ctx),
            "n_ubatch": lib.llama_n_ubatch(ctx),
            "flash_attn": self._flash_attn,
            "mmap": self._load_mode == lib.LLAMA_LOAD_MODE_MMAP,
            "load_mode": (lib.llama_load_mode_name(self._load_mode) or b"").decode(),
            "model_size_bytes": lib.llama_model_size(self.model),
            "model_n_params": lib.llama_model_n_params(self.model),
        }

    def reset(self) -> None:
        self._l.llama_memory_clear(self._l.llama_get_memory(self.ctx), True)

    def _decode(self, tokens: list[int]) -> None:
        arr = (self._l.llama_token * len(tokens))(*tokens)
        rc = self._l.llama_decode(self.ctx, self._l.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {len(tokens)} tokens")

    def prefill(self, tokens: list[int]) -> None:
        for start in range(0, len(tokens), self.n_batch):
            self._decode(tokens[start : start + self.n_batch])
        self._l.llama_synchronize(self.ctx)

    def decode(self, token: int) -> None:
        self._decode([token])
        self._l.llama_synchronize(self.ctx)

    def reset_counters(self) -> None:
        self._l.llama_perf_context_reset(self.ctx)

    def counters(self) -> dict:
        perf = self._l.llama_perf_context(self.ctx)
        return {
            "n_prompt": int(perf.n_p_eval),
            "n_gen": int(perf.n_eval),
            "prompt_ms": float(perf.t_p_eval_ms),
            "gen_ms": float(perf.t_eval_ms),
        }

    def check_counters(self, n_prompt: int, n_gen: int, counters: dict) -> str | None:
        """llama.cpp counts a batch of one token as generation and anything larger as prompt, and reports a
        zero count as 1 (it clamps)."""
        sizes = [min(self.n_batch, n_prompt - s) for s in range(0, n_prompt, self.n_batch)]
        want = {"n_prompt": sum(s for s in sizes if s > 1), "n_gen": sum(1 for s in sizes if s == 1) + n_gen}
        for key, n in want.items():
            got = counters.get(key)
            if got is not None and got != max(n, 1) and not (n == 0 and got in (0, 1)):
                return f"backend counted {key}={got} but the workload asked for {n}"
        return None

    def close(self) -> None:
        if self.ctx:
            self._l.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self._l.llama_model_free(self.model)
            self.model = None
