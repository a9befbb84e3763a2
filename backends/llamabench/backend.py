"""The `llama-bench` peer backend: a llama.cpp-family build the user made runs tritbench's models.

llama-bench times itself (a warmup, then `-r` repetitions of each test, wall clock around llama_decode), so
a session measures a whole workload per call (`measure`) instead of one prefill or decode at a time: the
repetitions come back in the child's sample format (`prefill_s`, `decode_s`), each carrying llama-bench's
raw sample, beside the facts of the run (command line, build commit and number, llama-bench's own JSON).

Before any timing the session checks the peer's greedy tokens against llama.cpp F16 (check.py); a peer
that fails is not measured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from tritbench.backends.llamabench import check, convert, peer
from tritbench.plugin import ConfigError, FormatInfo, Option


class PathOption(Option):
    """A path to a peer tool, checked when the plan is built: a missing, non-executable or wrong binary is
    one line (ConfigError) before any case runs."""

    def __init__(self, help: str, validate, required: bool = False) -> None:
        super().__init__(str, None, help, required=required)
        object.__setattr__(self, "validate", validate)

    def parse(self, name: str, value: Any) -> Any:
        # not Option.parse: it lowercases strings, and paths keep their case
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise ConfigError(f"option {name} takes a path, got {value!r}")
        path = Path(str(value).strip()).expanduser()
        self.validate(path)
        return str(path.resolve())


def _validate_quantize(path: str) -> None:
    p = peer.executable(path, "llama-quantize (quantize)")
    if not peer.quantize_types(peer.tool_help(p)):
        raise ConfigError(f"{p} lists no quantization types: not a llama-quantize")


def _validate_reference(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"reference model not found: {path}")


def cache_dir() -> Path:
    """Converted models: $TRITBENCH_HOME/peer-models, else ~/.cache/tritbench/peer-models (beside the
    synthesized ones; bitnet.cpp's type ids clash with upstream's, so each file's name carries the hash of
    the quantizer that wrote it)."""
    home = os.environ.get("TRITBENCH_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "tritbench") / "peer-models"


class LlamaBenchBackend:
    name: ClassVar[str] = "llama-bench"
    # The files tritbench writes, run as written; and peers' own ternary types, which the build's llama-quantize
    # makes from the F16 file (models.DERIVED_FORMATS): bitnet.cpp's I2_S, ik_llama.cpp's IQ2_BN and IQ1_BN.
    formats: ClassVar[dict[str, FormatInfo]] = {
        "f16": FormatInfo(ggml_type="F16"),
        "q8_0": FormatInfo(ggml_type="Q8_0", baseline="f16"),
        "q4_0": FormatInfo(ggml_type="Q4_0", baseline="f16"),
        "tq1_0": FormatInfo(ternary=True, ggml_type="TQ1_0", baseline="f16"),
        "tq2_0": FormatInfo(ternary=True, ggml_type="TQ2_0", baseline="f16"),
        # not gguf's types (bitnet.cpp's I2_S id clashes with upstream's): bits as their authors state them
        "i2_s": FormatInfo(ternary=True, bits=2.0, baseline="f16"),  # bitnet.cpp: 2 bits, one scale per tensor
        "iq2_bn": FormatInfo(ternary=True, bits=2.0, baseline="f16"),  # ik_llama.cpp README: 2.0 bpw
        "iq1_bn": FormatInfo(ternary=True, bits=1.625, baseline="f16"),  # ik_llama.cpp README: 1.625 bpw
    }
    # llama-bench's -pg reports one time for prompt and generation together: no prefill/decode split.
    workload_kinds: ClassVar[tuple[str, ...]] = ("pp", "tg")
    libraries: ClassVar[tuple[str, ...]] = ("llama-cpp-python",)  # the token check's reference
    options: ClassVar[dict[str, Option]] = {
        "bin": PathOption("the llama-bench binary of the build to run", lambda p: peer.check_bench(p), required=True),
        "quantize": PathOption("its llama-quantize (default: the one beside bin)", _validate_quantize),
        "n_batch": Option(int, 2048, "llama-bench -b: logical batch (never 1: that ruins prefill)", minimum=2),
        "n_ubatch": Option(int, 512, "llama-bench -ub: physical batch", minimum=2),
        "check": Option(bool, True, "check greedy tokens against llama.cpp F16 before measuring"),
        "reference": PathOption("the model's F16 file for the token check (default: the file run, if F16, else "
                                "the *-f16.gguf beside it)", _validate_reference),
    }

    def info(self) -> dict:
        import llama_cpp

        # The peer's own build is in every record's settings (`peer`): this is the check's reference.
        return {"version": "peer", "reference": f"llama-cpp-python {llama_cpp.__version__}"}

    def open(self, model_path: str, n_threads: int, options: dict, n_ctx: int,
             fmt: str | None = None) -> LlamaBenchSession:
        return LlamaBenchSession(model_path, n_threads, options, seed=0, fmt=fmt)


def reference_file(model: Path, option: str | None) -> Path | None:
    """The F16 file the token check compares with: the option, the model itself if it is full precision, or
    the `<name>-f16.gguf` tritbench wrote beside a preset's other formats."""
    if option:
        return Path(option).expanduser()
    try:
        convert.check_source(model)
        return model
    except ConfigError:
        pass
    stem, sep, _ = model.stem.rpartition("-")
    twin = model.with_name(f"{stem}-f16.gguf") if sep else None
    return twin if twin is not None and twin.is_file() else None


class LlamaBenchSession:
    """One peer build with one model file (first converted from it by the build's quantizer if `fmt` names a
    peer format)."""

    bos_token = None
    weights_mapped = None  # llama-bench's own process maps the file, not this one

    def __init__(self, model_path: str, n_threads: int, options: dict, seed: int = 0, fmt: str | None = None):
        if not options.get("bin"):
            raise ConfigError("the llama-bench backend needs --opt bin=/path/to/llama-bench")
        self.bench, self.features = peer.check_bench(options["bin"])
        self.options, self.n_threads = options, n_threads
        source = Path(model_path)
        self.conversion = None
        self.model = source
        if fmt:
            quantize = Path(options["quantize"]) if options.get("quantize") else peer.sibling(
                self.bench, (peer.QUANTIZE_TOOL,))
            if quantize is None:
                raise ConfigError(f"no {peer.QUANTIZE_TOOL} beside {self.bench}: give --opt quantize=PATH")
            self.model, self.conversion = convert.converted(source, fmt, quantize, cache_dir())
        self.token_check = self._check(source, seed) if options.get("check", True) else check.unavailable(
            "turned off (--opt check=0)")
        if self.token_check["status"] == "fail":
            raise RuntimeError(f"the peer's tokens are not llama.cpp F16's: {self.token_check['reason']}")

    def _check(self, source: Path, seed: int) -> dict:
        tool = peer.sibling(self.bench, peer.GREEDY_TOOLS)
        if tool is None:
            return check.unavailable(f"no {' or '.join(peer.GREEDY_TOOLS)} beside {self.bench}: nothing prints "
                                     "this build's greedy tokens")
        ref = reference_file(source, self.options.get("reference"))
        if ref is None:
            return check.unavailable(f"no F16 file of {source.name} to compare with (--opt reference=PATH)")
        return check.token_check(ref, tool, self.model, seed)

    def effective_settings(self) -> dict:
        made = {"model_file": {"path": str(self.model), "bytes": self.model.stat().st_size}} if self.conversion else {}
        return {**made,
            "n_threads": self.n_threads,
            "n_batch": self.options["n_batch"],
            "n_ubatch": self.options["n_ubatch"],
            "peer": {"bin": str(self.bench), "bin_sha256": peer.sha256_of(self.bench), "model": str(self.model),
                     "format": self.conversion["type"] if self.conversion else None,
                     "conversion": self.conversion, "token_check": self.token_check},
        }

    def measure(self, n_prompt: int, n_gen: int, depth: int, warmups: int, reps: int) -> tuple[list[dict], dict]:
        """One pp (n_gen 0) or tg (n_prompt 0) workload: llama-bench's repetitions as the child's samples,
        and the facts of the run. RuntimeError with the telling stderr line if llama-bench fails."""
        if bool(n_prompt) == bool(n_gen):
            raise ValueError("llama-bench measures prompt and generation apart: give one of n_prompt, n_gen")
        cmd = peer.bench_command(self.bench, self.model, n_prompt, n_gen, depth, self.n_threads, reps,
                                 self.options, self.features, warmup=warmups > 0)
        out, usage = peer.run_measured(cmd)
        try:
            tests = peer.parse_bench_output(out)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
        test = tests[0]
        got = (test["n_prompt"], test["n_gen"], test.get("n_depth", 0))
        if len(tests) != 1 or got != (n_prompt, n_gen, depth):
            raise RuntimeError(f"llama-bench ran {len(tests)} test(s), the first with n_prompt, n_gen, depth = {got}; "
                               f"asked for {(n_prompt, n_gen, depth)}")
        samples = [int(ns) for ns in test["samples_ns"]]
        if len(samples) != reps:
            raise RuntimeError(f"llama-bench returned {len(samples)} samples for -r {reps}")
        return [self._rep(ns, n_prompt, n_gen) for ns in samples], {
            "command": cmd,
            "build_commit": test.get("build_commit"),
            "build_number": test.get("build_number"),
            "warmup_runs": 0 if (warmups == 0 and self.features.no_warmup) else 1,
            "process": usage,
            "llama_bench": test,
        }

    @staticmethod
    def _rep(ns: int, n_prompt: int, n_gen: int) -> dict:
        seconds = ns / 1e9
        if n_prompt:
            return {"prefill_s": seconds, "sample_ns": ns, "counters": {}}
        # llama-bench times a tg test as a whole: each token gets the mean (per-token spread is unknown)
        return {"decode_s": [seconds / n_gen] * n_gen, "decode_split": "even", "sample_ns": ns, "counters": {}}

    def close(self) -> None:
        pass
