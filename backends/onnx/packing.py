"""Ternary weight packings for the `tritbench.TernaryMatMul` op, and the op's exact numpy reference.

Both packings are lookup-table layouts: a group of g consecutive weights of one output column (along K)
becomes a 4-bit index into a 16-entry table that the kernel builds, with adds only, from the g activations
of that group (the T-MAC / bitnet.cpp "TL" idea). One `vpshufb` (AVX2) or `tbl` (NEON) then fetches the
partial sums of 32 (16) groups at once; the tables hold int16 sums split into a low-byte and a high-byte
table.

Common to both:

- Columns come in tiles of 64 (`TILE_N`); N is padded to a multiple of 64 with zero columns.
- The packed array is 1-D uint8: tile 0's stream, then tile 1's, ... (a thread streams whole tiles).
- K is padded with zero weights to a multiple of the K step (4 for tern2, 12 for tern1.67); zero weights
  contribute nothing, whatever the padded activations are.
- A weight digit is d = t + 1 in {0, 1, 2}. Group j of a column covers k = g*j ... g*j + g - 1.
- Groups come in pairs (2p, 2p + 1). For one pair and one tile there are two 32-byte vectors V0, V1;
  byte i of Vv belongs to group 2p + (i // 16) and column c = i % 16; its low nibble is the index for
  tile column 32*v + c, its high nibble the index for tile column 32*v + 16 + c.

"tern2" (2.0 bits/weight): g = 2, index = d0 + 3*d1 (0..8). Per tile and pair (4 K rows): V0, V1 = 64
bytes. Tile stream = ceil(K/4) * 64 bytes.

"tern1.67" (5/3 = 1.667 bits/weight): g = 3, sign-folded. code = d0 + 3*d1 + 9*d2 (0..26, 13 = all
zero). code >= 13: index = code - 13, sign 0; code < 13: index = 13 - code (the negated pattern), sign 1.
Pairs come in duos (pairs 2u, 2u + 1 = 12 K rows). Per tile and duo: V0, V1 of pair 2u (64 bytes), V0, V1
of pair 2u + 1 (64 bytes), then a 32-byte sign vector S: byte i (same byte position as in the V vectors)
holds in bit 7 - b the sign for index plane b = 4*(pair within the duo) + 2*v + (0 low nibble, 1 high
nibble). After the tile's ceil(K/12) duos (160 bytes each) come 64 little-endian int32: the number of
sign-1 groups in each tile column (the kernel negates a table value v as ~v = -v - 1 and adds this count
back once per column).

The op's semantics (exactly what `reference_matmul` computes, in float32 where it says float):

    absmax[m] = max_k |x[m, k]|
    q[m, k]   = clip(rint(x[m, k] * (127 / absmax[m])), -127, 127)   rint: round half to even
    acc[m, n] = sum_k q[m, k] * t[k, n]                                exact integer (int64 here)
    y[m, n]   = float32(acc[m, n]) * ((absmax[m] / 127) * scale)
    a row with absmax 0 gives q = 0 and y = 0.
"""

from __future__ import annotations

import numpy as np

TILE_N = 64
PACKINGS = ("tern2", "tern1.67")
K_STEP = {"tern2": 4, "tern1.67": 12}
BITS_PER_WEIGHT = {"tern2": 2.0, "tern1.67": 5.0 / 3.0}
_DUO_BYTES = 160
_CORR_BYTES = 4 * TILE_N


def _check_packing(packing: str) -> None:
    if packing not in PACKINGS:
        raise ValueError(f"unknown packing {packing!r}; expected one of {', '.join(PACKINGS)}")


def _ceil_to(value: int, step: int) -> int:
    return -(-value // step) * step


def padded_shape(K: int, N: int, packing: str) -> tuple[int, int]:
    """(K, N) after padding to the packing's K step and to whole 64-column tiles."""
    _check_packing(packing)
    return _ceil_to(K, K_STEP[packing]), _ceil_to(N, TILE_N)


def packed_size(K: int, N: int, packing: str) -> int:
    """Bytes of the packed weight array for a K x N ternary matrix."""
    if K < 1 or N < 1:
        raise ValueError(f"K and N must be positive, got K={K}, N={N}")
    kp, np_ = padded_shape(K, N, packing)
    tiles = np_ // TILE_N
    if packing == "tern2":
        return tiles * (kp // 4) * 64
    return tiles * ((kp // 12) * _DUO_BYTES + _CORR_BYTES)


def _checked_ternary(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"ternary weights must be a non-empty 2-D (K, N) array, got shape {t.shape}")
    # three comparisons, not np.isin: isin sorts, 1.7 s of a kernel child's 4 s for a 4096x4096 layer
    if not ((t == 0) | (t == 1) | (t == -1)).all():
        raise ValueError("ternary weights must only hold -1, 0 and +1")
    return t.astype(np.int8)


def pack(t: np.ndarray, packing: str) -> np.ndarray:
    """Pack ternary weights t (K, N) with values in {-1, 0, 1} into the 1-D uint8 layout `packing`."""
    _check_packing(packing)
    t = _checked_ternary(t)
    K, N = t.shape
    kp, np_ = padded_shape(K, N, packing)
    d = np.ones((kp, np_), np.uint8)
    d[:K, :N] = (t + 1).astype(np.uint8)
    tiles = np_ // TILE_N
    if packing == "tern2":
        idx = d[0::2] + 3 * d[1::2]  # (groups, Np)
        planes = idx.reshape(kp // 4, 2, tiles, 2, 2, 16)  # pair, lane, tile, v, h, c
        byte = planes[..., 0, :] | (planes[..., 1, :] << 4)  # pair, lane, tile, v, c
        return np.ascontiguousarray(byte.transpose(2, 0, 3, 1, 4)).ravel()
    code = d[0::3] + 3 * d[1::3] + 9 * d[2::3]
    sign = code < 13
    idx = np.where(sign, 13 - code, code - 13).astype(np.uint8)
    duos = kp // 12
    planes = idx.reshape(duos, 2, 2, tiles, 2, 2, 16)  # duo, pair, lane, tile, v, h, c
    byte = planes[..., 0, :] | (planes[..., 1, :] << 4)  # duo, pair, lane, tile, v, c
    vectors = byte.transpose(3, 0, 1, 4, 2, 5).reshape(tiles, duos, 128)
    sbits = sign.reshape(duos, 2, 2, tiles, 2, 2, 16).astype(np.uint8)
    plane = 4 * np.arange(2)[:, None, None] + 2 * np.arange(2)[None, :, None] + np.arange(2)[None, None, :]
    shift = (7 - plane).astype(np.uint8).reshape(1, 2, 1, 1, 2, 2, 1)  # duo, pair, lane, tile, v, h, c
    sbyte = (sbits << shift).sum(axis=(1, 4, 5), dtype=np.uint8)  # duo, lane, tile, c
    svec = sbyte.transpose(2, 0, 1, 3).reshape(tiles, duos, 32)
    body = np.concatenate([vectors, svec], axis=2).reshape(tiles, duos * _DUO_BYTES)
    corr = sign.sum(axis=0, dtype=np.int64).astype("<i4").reshape(tiles, TILE_N).view(np.uint8)
    return np.ascontiguousarray(np.concatenate([body, corr], axis=1)).ravel()


def unpack(packed: np.ndarray, K: int, N: int, packing: str) -> np.ndarray:
    """Inverse of `pack`: the (K, N) int8 ternary matrix."""
    packed = np.asarray(packed, dtype=np.uint8).ravel()
    size = packed_size(K, N, packing)
    if packed.size != size:
        raise ValueError(f"packed array has {packed.size} bytes; K={K}, N={N}, {packing} needs {size}")
    kp, np_ = padded_shape(K, N, packing)
    tiles = np_ // TILE_N
    if packing == "tern2":
        byte = packed.reshape(tiles, kp // 4, 2, 2, 16).transpose(1, 3, 0, 2, 4)  # pair, lane, tile, v, c
        idx = np.stack([byte & 15, byte >> 4], axis=-2).reshape(kp // 2, np_)
        d = np.empty((kp, np_), np.int8)
        d[0::2], d[1::2] = idx % 3, idx // 3
        return (d - 1)[:K, :N].copy()
    duos = kp // 12
    body = packed.reshape(tiles, -1)[:, : duos * _DUO_BYTES].reshape(tiles, duos, _DUO_BYTES)
    byte = body[:, :, :128].reshape(tiles, duos, 2, 2, 2, 16).transpose(1, 2, 4, 0, 3, 5)  # duo,pair,lane,tile,v,c
    idx = np.stack([byte & 15, byte >> 4], axis=-2).reshape(kp // 3, np_).astype(np.int16)
    svec = body[:, :, 128:].reshape(tiles, duos, 2, 16).transpose(1, 2, 0, 3)  # duo, lane, tile, c
    planes = [(svec >> (7 - b)) & 1 for b in range(8)]  # b = 4*pair + 2*v + h
    sign = np.stack(planes, axis=0).reshape(2, 2, 2, duos, 2, tiles, 16)  # pair, v, h, duo, lane, tile, c
    sign = sign.transpose(3, 0, 4, 5, 1, 2, 6).reshape(kp // 3, np_).astype(bool)
    code = np.where(sign, 13 - idx, 13 + idx)
    d = np.empty((kp, np_), np.int8)
    d[0::3], d[1::3], d[2::3] = code % 3, (code // 3) % 3, code // 9
    return (d - 1)[:K, :N].copy()


def quantize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row absmax int8 quantization: (q int8 [..., K], absmax float32 [...]); see the module docstring."""
    x = np.asarray(x, dtype=np.float32)
    absmax = np.max(np.abs(x), axis=-1) if x.shape[-1] else np.zeros(x.shape[:-1], np.float32)
    safe = np.where(absmax > 0, absmax, np.float32(1))
    inv = (np.float32(127) / safe).astype(np.float32)
    q = np.clip(np.rint(x * inv[..., None]), -127, 127).astype(np.int8)
    q[absmax == 0] = 0
    return q, absmax.astype(np.float32)


def reference_matmul(x: np.ndarray, t: np.ndarray, scale: float) -> np.ndarray:
    """The op's exact output for x [..., K] and ternary t (K, N): integer sums in int64, float32 rescale."""
    x = np.asarray(x, dtype=np.float32)
    t = _checked_ternary(t)
    if x.ndim < 1 or x.shape[-1] != t.shape[0]:
        raise ValueError(f"x's last dimension must be K={t.shape[0]}, got shape {x.shape}")
    q, absmax = quantize_activations(x)
    acc = q.reshape(-1, t.shape[0]).astype(np.int64) @ t.astype(np.int64)
    rescale = (absmax.reshape(-1) / np.float32(127)).astype(np.float32) * np.float32(scale)
    y = acc.astype(np.float32) * rescale.astype(np.float32)[:, None]
    return y.astype(np.float32).reshape(*x.shape[:-1], t.shape[1])
