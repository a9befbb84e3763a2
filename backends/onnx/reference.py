"""A float64 numpy reference of the ternary decoder, emulating the `TernaryMatMul` op exactly.

Everything is float64 except the op itself, which sees what the graph gives it (float32 activations) and
computes what its C kernels compute (csrc/tb_portable.c, tb_driver.c): per-row absmax, `inv = 127.0f /
absmax` and `q = lrintf(x * inv)` in float32 (round half to even), clipped to +-127; exact integer sums
(int64 here); `y = (float)acc * ((absmax / 127.0f) * scale)` in float32. The rest (RMSNorm, RoPE, causal
grouped-query attention, SiLU, the head) follows llama.cpp's llama and bitnet graphs.
"""

from __future__ import annotations

import numpy as np

from tritbench.backends.onnx.decoder import default_rotary_interleaved, rope_cache
from tritbench.backends.onnx.weights import DecoderWeights, Ternary

EXACT_F32 = 2**24
HEAD_ROWS = 4096


def op_matmul(x: np.ndarray, lin: Ternary) -> np.ndarray:
    """TernaryMatMul of x [n, K] by lin, bit for bit as the C op computes it, returned as float64."""
    xf = np.asarray(x, np.float32)
    absmax = np.abs(xf).max(axis=-1)
    safe = np.where(absmax > 0, absmax, np.float32(1))
    inv = (np.float32(127) / safe).astype(np.float32)
    q = np.clip(np.rint(xf * inv[:, None]), -127, 127)
    q[absmax == 0] = 0
    if 127 * lin.K < EXACT_F32:  # every partial sum is an integer below 2^24: float32 BLAS sums exactly
        acc = (q.astype(np.float32) @ lin.values(np.float32)).astype(np.int64)
    else:
        acc = q.astype(np.int64) @ lin.values(np.int64)
    rescale = ((absmax / np.float32(127)).astype(np.float32) * np.float32(lin.scale)).astype(np.float32)
    return (acc.astype(np.float32) * rescale[:, None]).astype(np.float64)


def near_tie_rows(x: np.ndarray, ulps: float, row_scale: bool = False) -> np.ndarray:
    """Rows of x [n, K] where some x * (127 / absmax) lies within `ulps` float32 ulps of a rounding boundary
    (k + 1/2): there a float32 graph whose inputs differ from this reference's by a few ulps may round the
    other way, a legitimate difference of one quantization step that later layers amplify. `row_scale` counts
    ulps of the row's largest value (127) rather than of each element: for an input whose float32 error
    follows the row's magnitude, as attention's weighted sums of value rows do."""
    xf = np.asarray(x, np.float32)
    absmax = np.abs(xf).max(axis=-1)
    inv = (np.float32(127) / np.where(absmax > 0, absmax, np.float32(1))).astype(np.float32)
    v = (xf * inv[:, None]).astype(np.float32)
    dist = np.abs(np.abs(v.astype(np.float64) - np.floor(v)) - 0.5)
    ulp = np.spacing(np.float32(127)) if row_scale else np.spacing(np.abs(v))
    return ((dist <= ulps * ulp.astype(np.float64)) & (np.abs(v) < 127)).any(axis=-1)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight.astype(np.float64)


def rope(x: np.ndarray, positions: np.ndarray, cos: np.ndarray, sin: np.ndarray, interleaved: bool) -> np.ndarray:
    """Rotate x [n, heads, head_dim] at `positions`: adjacent pairs (interleaved) or pairs head_dim/2 apart."""
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    half = x.shape[-1] // 2
    a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., :half], x[..., half:])
    ra, rb = a * c - b * s, a * s + b * c
    out = np.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = ra, rb
    else:
        out[..., :half], out[..., half:] = ra, rb
    return out


def rotate32(x: np.ndarray, c: np.ndarray, s: np.ndarray, interleaved: bool) -> np.ndarray:
    """tritbench.GroupQueryAttention's rotation, in float32 as it computes it: x [..., D] with its first
    2 * c.shape[-1] dimensions rotated by c/s [..., rot / 2]; the rest unchanged."""
    y, half = x.copy(), c.shape[-1]
    x0, x1 = (x[..., 0:2 * half:2], x[..., 1:2 * half:2]) if interleaved else (x[..., :half], x[..., half:2 * half])
    ra, rb = x0 * c - x1 * s, x0 * s + x1 * c
    if interleaved:
        y[..., 0:2 * half:2], y[..., 1:2 * half:2] = ra, rb
    else:
        y[..., :half], y[..., half:2 * half] = ra, rb
    return y


def group_query_attention(qkv: np.ndarray, past_k: np.ndarray, past_v: np.ndarray, past: list[int], heads: int,
                          cos: np.ndarray, sin: np.ndarray, interleaved: bool,
                          scale: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What tritbench.GroupQueryAttention computes for packed qkv [B, S, (H + 2 KVH) D] whose row b starts at
    position past[b] of caches [B, KVH, P, D]: the caches after the call (new K rows rotated in float32, then
    rounded to the caches' type, exactly as the op stores them) and the output [B, S, H D] in float64."""
    B, S, _ = qkv.shape
    kvh, D = past_k.shape[1], past_k.shape[3]
    group, k, v = heads // kvh, past_k.copy(), past_v.copy()
    scale = 1 / np.sqrt(D) if scale is None else scale
    out = np.zeros((B, S, heads * D))
    for b in range(B):
        pos = past[b] + np.arange(S)
        c, s = cos[pos][:, None], sin[pos][:, None]
        parts = qkv[b].reshape(S, heads + 2 * kvh, D)
        k[b, :, pos] = rotate32(parts[:, heads:heads + kvh], c, s, interleaved).astype(k.dtype)
        v[b, :, pos] = parts[:, heads + kvh:].astype(v.dtype)
        q = rotate32(parts[:, :heads], c, s, interleaved).astype(np.float64)
        for i in range(S):
            for h in range(heads):
                keys, vals = (cache[b, h // group, :pos[i] + 1].astype(np.float64) for cache in (k, v))
                z = keys @ q[i, h] * scale
                p = np.exp(z - z.max())
                out[b, i, h * D:(h + 1) * D] = p / p.sum() @ vals
    return k, v, out


class ReferenceDecoder:
    """The decoder of `w` in float64 with its own KV cache: `run(tokens)` feeds the next positions and
    returns the logits of every one of them. `kv_type="f16"` rounds K and V (and Q) to float16 as they enter
    the cache, as the f16 graph does."""

    def __init__(self, w: DecoderWeights, max_len: int, *, kv_type: str = "f32",
                 rotary_interleaved: bool | None = None, tie_ulps: float = 8.0):
        self.w, self.kv_type, self.tie_ulps = w, kv_type, tie_ulps
        self.interleaved = default_rotary_interleaved(w.arch) if rotary_interleaved is None else rotary_interleaved
        self.cos, self.sin = rope_cache(max_len, w.head_dim, w.rope_base)
        self.reset()

    def reset(self) -> None:
        self.k: list[list[np.ndarray]] = [[] for _ in self.w.blocks]
        self.v: list[list[np.ndarray]] = [[] for _ in self.w.blocks]
        self.pos = 0
        self.near_ties: list[int] = []  # positions where an op input is near a rounding tie (near_tie_rows)

    def _op(self, x: np.ndarray, lin: Ternary, positions: np.ndarray, row_scale: bool = False) -> np.ndarray:
        self.near_ties += positions[near_tie_rows(x, self.tie_ulps, row_scale)].tolist()
        return op_matmul(x, lin)

    def _round(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float16).astype(np.float64) if self.kv_type == "f16" else x

    def run(self, tokens) -> np.ndarray:
        w = self.w
        tokens = np.asarray(tokens, np.int64)
        n, hd, group = len(tokens), w.head_dim, w.heads // w.kv_heads
        positions = np.arange(self.pos, self.pos + n)
        x = w.embd[tokens].astype(np.float64)
        for i, b in enumerate(w.blocks):
            h = rms_norm(x, b.attn_norm, w.eps)
            q = self._round(self._op(h, b.linear["attn_q"], positions)).reshape(n, w.heads, hd)
            k = self._round(op_matmul(h, b.linear["attn_k"])).reshape(n, w.kv_heads, hd)
            v = self._round(op_matmul(h, b.linear["attn_v"])).reshape(n, w.kv_heads, hd)
            q = rope(q, positions, self.cos, self.sin, self.interleaved)
            k = rope(k, positions, self.cos, self.sin, self.interleaved)
            self.k[i].append(self._round(k))
            self.v[i].append(v)
            keys, values = np.concatenate(self.k[i]), np.concatenate(self.v[i])  # [total, kv_heads, hd]
            keys, values = np.repeat(keys, group, axis=1), np.repeat(values, group, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, keys) / np.sqrt(hd)
            causal = np.arange(keys.shape[0])[None, :] > positions[:, None]
            scores[:, causal] = -np.inf
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            attn = np.einsum("hqk,khd->qhd", probs, values).reshape(n, w.hidden)
            if b.attn_sub_norm is not None:
                attn = rms_norm(attn, b.attn_sub_norm, w.eps)
            x = x + self._op(attn, b.linear["attn_output"], positions, row_scale=True)
            h = rms_norm(x, b.ffn_norm, w.eps)
            gate, up = self._op(h, b.linear["ffn_gate"], positions), op_matmul(h, b.linear["ffn_up"])
            m = gate / (1 + np.exp(-gate)) * up
            if b.ffn_sub_norm is not None:
                m = rms_norm(m, b.ffn_sub_norm, w.eps)
            x = x + self._op(m, b.linear["ffn_down"], positions)
        self.pos += n
        x = rms_norm(x, w.output_norm, w.eps)
        logits = np.empty((n, w.vocab))
        for i in range(0, w.vocab, HEAD_ROWS):  # a float64 copy of a slice of the head at a time, not of all of it
            logits[:, i:i + HEAD_ROWS] = x @ w.head[i:i + HEAD_ROWS].T.astype(np.float64)
        return logits


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """||got - want|| / ||want|| over all elements."""
    want = np.asarray(want, np.float64)
    return float(np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want))
