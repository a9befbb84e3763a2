"""A llama-style ternary model's weights for the onnxruntime decoder: from a preset (the same synthesis as the
GGUF files) or from a GGUF file (F16, TQ2_0, TQ1_0, ... read with the `gguf` package).

Every linear layer must be exactly `t * s` with t in {-1, 0, +1} and one scale s per tensor (what the
`TernaryMatMul` op computes with); anything else is refused with a `DecoderError` naming the tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ARCHS = ("llama", "bitnet")
LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
DEFAULT_ROPE_BASE = 10000.0
DEFAULT_EPS = 1e-5


class DecoderError(ValueError):
    """A model the decoder cannot run: not ternary, an unsupported architecture or shape."""


# t + 1 in two bits, four weights per byte along a row: a quarter of int8's memory, so a loaded 3b model's
# linear layers hold about 0.8 GB rather than 3.2 GB until the graph and the load check are done with them
_SHIFTS = np.array([0, 2, 4, 6], np.uint8)


def _codes(t: np.ndarray) -> np.ndarray:
    rows, cols = t.shape
    u = np.zeros((rows, -(-cols // 4) * 4), np.uint8)
    u[:, :cols] = t + 1
    u = u.reshape(rows, -1, 4)
    return (u[..., 0] | (u[..., 1] << 2) | (u[..., 2] << 4) | (u[..., 3] << 6)).astype(np.uint8)


class Ternary:
    """One linear layer: t [in, out] (the op's K x N) in {-1, 0, +1}, and its per-tensor scale. Held as 2-bit
    codes; `t` (int8) and `values(dtype)` unpack them on demand."""

    __slots__ = ("_codes", "K", "N", "scale")
    _tables: dict = {}

    def __init__(self, t: np.ndarray, scale: float):
        t = np.asarray(t)
        if t.ndim != 2:
            raise ValueError(f"a linear layer is 2-D, got shape {t.shape}")
        self.K, self.N = t.shape
        self._codes = _codes(t.astype(np.int8, copy=False))
        self.scale = scale

    @classmethod
    def concat(cls, parts: list[Ternary], scale: float) -> Ternary:
        """The parts' columns side by side (Q|K|V, gate|up), from their codes where no byte is shared."""
        if any(p.N % 4 for p in parts[:-1]):
            return cls(np.concatenate([p.t for p in parts], axis=1), scale)
        joined = cls.__new__(cls)
        joined.K, joined.N, joined.scale = parts[0].K, sum(p.N for p in parts), scale
        joined._codes = np.concatenate([p._codes for p in parts], axis=1)
        return joined

    @property
    def shape(self) -> tuple[int, int]:
        return self.K, self.N

    @property
    def t(self) -> np.ndarray:
        return self.values(np.int8)

    def values(self, dtype) -> np.ndarray:
        """t as `dtype` [K, N], one table lookup per byte (no int8 copy on the way)."""
        dtype = np.dtype(dtype)
        table = Ternary._tables.get(dtype)
        if table is None:
            codes = np.arange(256, dtype=np.uint8)
            table = ((codes[:, None] >> _SHIFTS) & 3).astype(np.int64) - 1
            table = Ternary._tables[dtype] = table.astype(dtype)
        return table[self._codes].reshape(self.K, -1)[:, : self.N]


@dataclass
class Block:
    """One transformer block: RMSNorm weights (float32) and the seven linear layers."""

    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    linear: dict[str, Ternary]
    attn_sub_norm: np.ndarray | None = None  # bitnet only: before attn_output
    ffn_sub_norm: np.ndarray | None = None  # bitnet only: before ffn_down


@dataclass
class DecoderWeights:
    """Hyper-parameters and weights of one model; `output` is None when the head is tied to `embd`."""

    arch: str
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    eps: float
    rope_base: float
    n_ctx_train: int
    embd: np.ndarray  # float32 [vocab, hidden], the values the file stores
    output_norm: np.ndarray
    output: np.ndarray | None  # float32 [vocab, hidden]
    blocks: list[Block] = field(default_factory=list)
    source: str = ""
    embd_type: str = "F16"  # GGML type of the stored embedding (its bytes per row count per token)
    output_type: str = "F16"
    linear_type: str = "F16"  # GGML type the file stores the linear layers in (TQ1_0, TQ2_0, F16, ...)
    bos_token: int | None = None

    @property
    def layers(self) -> int:
        return len(self.blocks)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def head(self) -> np.ndarray:
        """The output projection [vocab, hidden] (the embedding when tied)."""
        return self.embd if self.output is None else self.output


def ternarize(name: str, w: np.ndarray) -> Ternary:
    """t, s with w == t * s exactly (w as [out, in], GGUF's row order), or DecoderError naming the tensor."""
    w = np.asarray(w, dtype=np.float32)
    a = np.abs(w)
    s = float(a.max()) if a.size else 0.0
    if not np.isfinite(s):
        raise DecoderError(f"{name} is not ternary times one scale: it holds non-finite values")
    nonzero = a[a != 0]
    if nonzero.size and not (nonzero == np.float32(s)).all():
        levels = np.unique(nonzero)
        shown = ", ".join(f"{v:g}" for v in levels[:3]) + (", ..." if levels.size > 3 else "")
        raise DecoderError(f"{name} is not ternary times one scale: {levels.size} distinct magnitudes ({shown})")
    return Ternary(np.sign(w).astype(np.int8).T, s if s > 0 else 1.0)


def _check_shapes(w: DecoderWeights) -> None:
    if w.arch not in ARCHS:
        raise DecoderError(f"unsupported architecture {w.arch!r} (the decoder runs: {', '.join(ARCHS)})")
    if w.hidden % w.heads or w.heads % w.kv_heads or w.head_dim % 2:
        raise DecoderError(f"unsupported attention shape: hidden {w.hidden}, heads {w.heads}, kv_heads {w.kv_heads}")
    q_dim, kv_dim = w.hidden, w.kv_heads * w.head_dim
    want = {"attn_q": (w.hidden, q_dim), "attn_k": (w.hidden, kv_dim), "attn_v": (w.hidden, kv_dim),
            "attn_output": (q_dim, w.hidden), "ffn_gate": (w.hidden, w.ffn), "ffn_up": (w.hidden, w.ffn),
            "ffn_down": (w.ffn, w.hidden)}
    for i, b in enumerate(w.blocks):
        for name, shape in want.items():
            if name not in b.linear:
                raise DecoderError(f"blk.{i}.{name}.weight is missing")
            if b.linear[name].shape != shape:
                raise DecoderError(f"blk.{i}.{name}.weight has shape {b.linear[name].shape[::-1]} (out, in); "
                                   f"expected {shape[::-1]}")
        if w.arch == "bitnet" and (b.attn_sub_norm is None or b.ffn_sub_norm is None):
            raise DecoderError(f"blk.{i}: a bitnet model needs attn_sub_norm and ffn_sub_norm")
    if w.embd.shape != (w.vocab, w.hidden) or w.head.shape != (w.vocab, w.hidden):
        raise DecoderError(f"token_embd/output must be [{w.vocab}, {w.hidden}]")


def _assemble(meta: dict, tensors, source: str, types: dict[str, str] | None = None,
              bos_token: int | None = None) -> DecoderWeights:
    """DecoderWeights from hyper-parameters and an iterator of (GGUF name, float32 [rows, cols] or [n])."""
    arch = meta["arch"]
    if arch not in ARCHS:
        raise DecoderError(f"unsupported architecture {arch!r} (the decoder runs: {', '.join(ARCHS)})")
    layers = int(meta["layers"])
    norms: dict[int, dict[str, np.ndarray]] = {i: {} for i in range(layers)}
    linear: dict[int, dict[str, Ternary]] = {i: {} for i in range(layers)}
    top: dict[str, np.ndarray] = {}
    for name, values in tensors:
        parts = name.split(".")
        if parts[0] == "blk" and len(parts) == 4 and parts[3] == "weight" and int(parts[1]) in norms:
            i, kind = int(parts[1]), parts[2]
            if kind in LINEARS:
                linear[i][kind] = ternarize(name, values)
            elif kind in ("attn_norm", "ffn_norm", "attn_sub_norm", "ffn_sub_norm"):
                norms[i][kind] = np.asarray(values, np.float32)
            else:
                raise DecoderError(f"unsupported tensor {name} (the decoder knows llama and bitnet blocks)")
        elif name in ("token_embd.weight", "output_norm.weight", "output.weight"):
            top[name] = np.asarray(values, np.float32)
        elif name != "rope_freqs.weight":
            raise DecoderError(f"unsupported tensor {name}")
    if "token_embd.weight" not in top or "output_norm.weight" not in top:
        raise DecoderError("token_embd.weight or output_norm.weight is missing")
    embd = top["token_embd.weight"]
    blocks = []
    for i in range(layers):
        n = norms[i]
        if "attn_norm" not in n or "ffn_norm" not in n:
            raise DecoderError(f"blk.{i}: attn_norm or ffn_norm is missing")
        blocks.append(Block(n["attn_norm"], n["ffn_norm"], linear[i], n.get("attn_sub_norm"), n.get("ffn_sub_norm")))
    types = types or {}
    w = DecoderWeights(
        arch=arch, hidden=int(meta["hidden"]), heads=int(meta["heads"]), kv_heads=int(meta["kv_heads"]),
        ffn=int(meta["ffn"]), vocab=embd.shape[0], eps=float(meta["eps"]), rope_base=float(meta["rope_base"]),
        n_ctx_train=int(meta["n_ctx"]), embd=embd, output_norm=top["output_norm.weight"],
        output=top.get("output.weight"), blocks=blocks, source=source,
        embd_type=types.get("token_embd.weight", "F16"),
        output_type=types.get("output.weight", types.get("token_embd.weight", "F16")),
        linear_type=types.get("blk.0.attn_q.weight", "F16"), bos_token=bos_token)
    _check_shapes(w)
    return w


def from_preset(ref: str) -> DecoderWeights:
    """The weights of a preset (or `PRESET@FIELD=VALUE`), exactly the values its F16 GGUF file stores."""
    from tritbench.models.matrices import preset_tensors

    spec, tensors = preset_tensors(ref)
    meta = {"arch": spec["arch"], "layers": spec["layers"], "hidden": spec["hidden"], "heads": spec["heads"],
            "kv_heads": spec["kv_heads"], "ffn": spec["ffn"], "eps": spec["norm_eps"],
            "rope_base": spec["rope_freq_base"], "n_ctx": spec["n_ctx"]}
    types = {"token_embd.weight": spec["embd_type"].upper(), "output.weight": spec["output_type"].upper()}
    return _assemble(meta, tensors, f"preset {spec['name']}", types, bos_token=1)


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is None:
            raise DecoderError(f"GGUF metadata {key} is missing")
        return default
    value = f.parts[f.data[0]]
    if f.types and f.types[0].name == "STRING":
        return bytes(value).decode()
    return value.tolist()[0] if hasattr(value, "tolist") else value


def from_gguf(path: str) -> DecoderWeights:
    """The weights of a GGUF file; every linear layer dequantized and checked to be ternary times one scale."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise DecoderError(f"cannot read GGUF file {path}: {exc}") from None
    arch = _field(reader, "general.architecture")
    if arch not in ARCHS:
        raise DecoderError(f"unsupported architecture {arch!r} in {path} (the decoder runs: {', '.join(ARCHS)})")
    meta = {"arch": arch, "layers": _field(reader, f"{arch}.block_count"),
            "hidden": _field(reader, f"{arch}.embedding_length"),
            "heads": _field(reader, f"{arch}.attention.head_count"),
            "kv_heads": _field(reader, f"{arch}.attention.head_count_kv",
                               _field(reader, f"{arch}.attention.head_count")),
            "ffn": _field(reader, f"{arch}.feed_forward_length"),
            "eps": _field(reader, f"{arch}.attention.layer_norm_rms_epsilon", DEFAULT_EPS),
            "rope_base": _field(reader, f"{arch}.rope.freq_base", DEFAULT_ROPE_BASE),
            "n_ctx": _field(reader, f"{arch}.context_length")}
    rope_dims = _field(reader, f"{arch}.rope.dimension_count", 0)
    if rope_dims and rope_dims != meta["hidden"] // meta["heads"]:
        raise DecoderError(f"partial RoPE ({rope_dims} of {meta['hidden'] // meta['heads']} dims) is not supported")
    types = {t.name: t.tensor_type.name for t in reader.tensors}

    def tensors():
        for t in reader.tensors:
            rows_cols = tuple(int(d) for d in reversed(t.shape))  # GGUF lists ne0 (the row length) first
            try:
                values = dequantize(t.data, t.tensor_type)
            except NotImplementedError:
                raise DecoderError(f"{t.name}: GGML type {t.tensor_type.name} cannot be dequantized") from None
            yield t.name, np.asarray(values, np.float32).reshape(rows_cols)

    bos = reader.fields.get("tokenizer.ggml.bos_token_id")
    return _assemble(meta, tensors(), path, types, bos_token=int(bos.parts[bos.data[0]][0]) if bos else None)
