"""Deterministic synthesis of ternary GGUF models that llama.cpp loads, cached by spec hash.

Linear weights are W = t * s with t in {-1, 0, +1} and s a power of two, so s is exact in f16 and the
TQ1_0/TQ2_0 files dequantize bit for bit to the F16 file. Every tensor is drawn from its own random
stream (seed + tensor name), so a tensor never depends on which other tensors exist or their order.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import secrets
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import (
    GGML_QUANT_SIZES,
    GGML_QUANT_VERSION,
    GGMLQuantizationType,
    GGUFWriter,
    LlamaFileType,
    TokenType,
)
from gguf.quants import QuantError, quantize

from .errors import ModelError
from .spec import N_SPECIAL_TOKENS, ModelSpec

FORMATS = ("f16", "q8_0", "q4_0", "tq1_0", "tq2_0")
# Formats a runtime builds itself from a GGUF file tritbench writes, instead of reading the file as written:
# the onnx decoder's TernaryMatMul packings and onnxruntime's MatMulNBits 2-bit (from the file of the same
# trits), and peer engines' ternary types,
# made by the peer's own llama-quantize from the F16 file (bitnet.cpp's I2_S, ik_llama.cpp's IQ2_BN and IQ1_BN).
# The runtime is given the format (GenerationBackend.open's fmt); the value is the format of the file it reads.
DERIVED_FORMATS = {"tern2": "tq2_0", "tern1.67": "tq1_0", "nbits2": "tq2_0", "i2_s": "f16", "iq2_bn": "f16",
                   "iq1_bn": "f16"}
SPEC_KEY = "tritbench.spec"
EMBD_STD = 0.02  # a random model with larger embeddings degenerates (bitnet repeats one token)
ROPE_FREQ_BASE = 10000.0

_QTYPES = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "q8_0": GGMLQuantizationType.Q8_0,
    "q4_0": GGMLQuantizationType.Q4_0,
    "tq1_0": GGMLQuantizationType.TQ1_0,
    "tq2_0": GGMLQuantizationType.TQ2_0,
}
_FTYPES = {
    "f16": LlamaFileType.MOSTLY_F16,
    "q8_0": LlamaFileType.MOSTLY_Q8_0,
    "q4_0": LlamaFileType.MOSTLY_Q4_0,
    "tq1_0": LlamaFileType.MOSTLY_TQ1_0,
    "tq2_0": LlamaFileType.MOSTLY_TQ2_0,
}


@dataclass(frozen=True)
class TensorPlan:
    """One tensor to write: GGUF name, numpy shape (out, in) and role (embd, output, norm or linear)."""

    name: str
    shape: tuple[int, ...]
    role: str


def cache_dir() -> Path:
    """Where synthesized models live: $TRITBENCH_HOME/models, else ~/.cache/tritbench/models."""
    home = os.environ.get("TRITBENCH_HOME")
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "tritbench"
    return root / "models"


def check_format(fmt: str) -> str:
    """fmt lowercased if it is one of FORMATS or DERIVED_FORMATS, else ModelError."""
    norm = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if norm not in FORMATS and norm not in DERIVED_FORMATS:
        raise ModelError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)}; made by a backend from one of "
                         f"them: {', '.join(DERIVED_FORMATS)})")
    return norm


def file_format(fmt: str) -> str:
    """The GGUF format of the file that holds a model in fmt (fmt itself, or the file a derived format reads)."""
    norm = check_format(fmt)
    return DERIVED_FORMATS.get(norm, norm)


def model_path(spec: ModelSpec, fmt: str, cache: Path | None = None) -> Path:
    """The cache path synthesize() uses for spec in fmt, whether or not the file exists yet."""
    root = Path(cache) if cache is not None else cache_dir()
    fmt = file_format(fmt)
    return root / f"{spec.name}-{spec.spec_hash()}" / f"{spec.name}-{fmt}.gguf"


def synthesize(spec: ModelSpec, fmt: str, cache: Path | None = None) -> Path:
    """Path of spec in fmt under cache, writing the file first if it is not there yet."""
    return synthesize_many(spec, [fmt], cache)[check_format(fmt)]


def synthesize_many(spec: ModelSpec, fmts: Iterable[str], cache: Path | None = None) -> dict[str, Path]:
    """Paths of spec in each of fmts; the missing files are written in one pass over the weights.

    Each file is written to a temp file in the same folder and renamed into place, so the final path
    never holds a partial file, even if the process is interrupted.
    """
    if isinstance(fmts, str):
        fmts = [fmts]  # a bare "tq2_0" would otherwise be read as the formats "t", "q", ...
    paths = {fmt: model_path(spec, fmt, cache) for fmt in map(check_format, fmts)}
    missing = {file_format(fmt): path for fmt, path in paths.items() if not path.exists()}
    if missing:
        try:
            _write_formats(spec, missing)
        except OSError as exc:  # a read-only, full or non-folder TRITBENCH_HOME: the user's set-up, one line
            folder = next(iter(missing.values())).parent
            raise ModelError(f"cannot write the synthesized model into {folder}: {exc.strerror or exc} "
                             "(set TRITBENCH_HOME to a writable folder)") from None
    return paths


def tensor_plan(spec: ModelSpec) -> list[TensorPlan]:
    """Every tensor of spec in file order: embedding, blocks, output norm, output (unless tied)."""
    plan = [TensorPlan("token_embd.weight", (spec.vocab, spec.hidden), "embd")]
    for i in range(spec.layers):
        for suffix, length in spec.norm_shapes().items():
            plan.append(TensorPlan(f"blk.{i}.{suffix}.weight", (length,), "norm"))
        for suffix, layer in spec.linear_layers().items():
            plan.append(TensorPlan(f"blk.{i}.{suffix}.weight", layer.rows_cols, "linear"))
    plan.append(TensorPlan("output_norm.weight", (spec.hidden,), "norm"))
    if not spec.tied_output:
        plan.append(TensorPlan("output.weight", (spec.vocab, spec.hidden), "output"))
    return plan


def linear_scale(fan_in: int) -> float:
    """Per-tensor scale s: the power of two nearest 1/sqrt(fan_in), hence exact in f16."""
    return 2.0 ** round(-0.5 * math.log2(fan_in))


def make_tensor(spec: ModelSpec, plan: TensorPlan) -> np.ndarray:
    """The float32 values of one tensor, from its own stream so it does not depend on the others."""
    if plan.role == "norm":
        return np.ones(plan.shape, dtype=np.float32)
    rng = _tensor_rng(spec.seed, plan.name)
    if plan.role == "linear":
        trits = rng.integers(-1, 2, size=plan.shape, dtype=np.int8)
        return trits.astype(np.float32) * np.float32(linear_scale(plan.shape[1]))
    return rng.standard_normal(plan.shape, dtype=np.float32) * np.float32(EMBD_STD)


def tensor_type(spec: ModelSpec, fmt: str, plan: TensorPlan) -> GGMLQuantizationType:
    """The GGML type plan is stored as in a file of format fmt."""
    if plan.role == "norm":
        return GGMLQuantizationType.F32
    if plan.role == "embd":
        return _QTYPES[spec.embd_type]
    if plan.role == "output":
        return _QTYPES[spec.output_type]
    return _QTYPES[fmt]


def vocab_tokens(vocab: int) -> tuple[list[str], list[float], list[int]]:
    """A llama (SentencePiece) vocab of exactly vocab tokens: texts, scores and token types.

    <unk>, <s>, </s> and the 256 byte tokens come first; llama.cpp aborts in tokenize() without the byte
    tokens. The rest are unique pieces (characters, then lowercase words with and without a leading ▁).
    """
    n_pieces = vocab - N_SPECIAL_TOKENS
    pieces = list(itertools.islice(_pieces(), n_pieces))
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    scores = [0.0] * N_SPECIAL_TOKENS + [-float(i) for i in range(n_pieces)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    types += [TokenType.NORMAL] * n_pieces
    return tokens, scores, [int(t) for t in types]


def _pieces() -> Iterator[str]:
    chars = string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,;:!?'\"-()"
    yield from chars
    yield from ("\u2581" + c for c in chars)
    for length in itertools.count(2):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            word = "".join(letters)
            yield "\u2581" + word
            yield word


def _tensor_rng(seed: int, name: str) -> np.random.Generator:
    # Hash the name (not Python's salted hash()) so streams are the same in every process.
    name_key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, name_key])


def _write_formats(spec: ModelSpec, targets: dict[str, Path]) -> None:
    """Write spec once per format in targets, generating each tensor once and streaming it to all files."""
    plan = tensor_plan(spec)
    temps = {fmt: _temp_path(path) for fmt, path in targets.items()}
    writers: dict[str, GGUFWriter] = {}
    try:
        for fmt, temp in temps.items():
            temp.parent.mkdir(parents=True, exist_ok=True)
            writers[fmt] = GGUFWriter(temp, spec.arch)  # registered first, so a failure below closes it
            _write_preamble(writers[fmt], spec, fmt, plan)
        for item in plan:
            values = make_tensor(spec, item)
            for fmt, writer in writers.items():
                writer.write_tensor_data(_encode(values, tensor_type(spec, fmt, item), item.name))
        for fmt, writer in writers.items():
            writer.close()
            _fsync(temps[fmt])
            os.replace(temps[fmt], targets[fmt])
    except BaseException:
        for writer in writers.values():
            writer.close()
        for temp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        raise


def _temp_path(final: Path) -> Path:
    # Unique per process and call, so concurrent writers of the same model never share a temp file.
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _write_preamble(writer: GGUFWriter, spec: ModelSpec, fmt: str, plan: list[TensorPlan]) -> None:
    """Put the header, metadata and tensor infos on disk, leaving writer ready for write_tensor_data()."""
    _add_metadata(writer, spec, fmt)
    for item in plan:
        qtype = tensor_type(spec, fmt, item)
        block, type_size = GGML_QUANT_SIZES[qtype]
        nbytes = math.prod(item.shape) // block * type_size
        # The dtype argument only matters for non-raw tensors; raw_dtype sets the GGML type.
        writer.add_tensor_info(item.name, item.shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()


def _add_metadata(writer: GGUFWriter, spec: ModelSpec, fmt: str) -> None:
    """The hparams llama.cpp requires for spec.arch, a llama tokenizer, and the spec as JSON."""
    writer.add_name(spec.name)
    writer.add_file_type(int(_FTYPES[fmt]))
    writer.add_quantization_version(GGML_QUANT_VERSION)
    writer.add_context_length(spec.n_ctx)
    writer.add_embedding_length(spec.hidden)
    writer.add_block_count(spec.layers)
    writer.add_feed_forward_length(spec.ffn)
    writer.add_head_count(spec.heads)
    writer.add_head_count_kv(spec.kv_heads)
    writer.add_layer_norm_rms_eps(spec.norm_eps)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_rope_freq_base(ROPE_FREQ_BASE)
    writer.add_vocab_size(spec.vocab)
    tokens, scores, types = vocab_tokens(spec.vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_string(SPEC_KEY, json.dumps(spec.to_dict(), sort_keys=True))


def _encode(values: np.ndarray, qtype: GGMLQuantizationType, name: str) -> np.ndarray:
    try:
        return quantize(values, qtype)
    except (QuantError, ValueError) as exc:  # shapes gguf cannot split into blocks
        raise ModelError(f"cannot quantize {name} {values.shape} to {qtype.name}: {exc}") from None


def _fsync(path: Path) -> None:
    # Without it a crash soon after os.replace could leave an empty file at the final path.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
