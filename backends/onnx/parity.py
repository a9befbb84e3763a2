"""Is the decoder the same model as llama.cpp's? Logit-comparison metrics and their calibrated verdict.

Both engines run one seeded token trace (a prompt, then single-token decode steps through the KV cache); the
logits of every step are compared with llama.cpp's F16 logits. The tolerances come from llama.cpp's own gap
between its TQ2_0 (int8 activations, like the op) and F16 runs of the same weights, measured on the same
trace: the decoder may be at most `rms_ratio` times as far in relative RMS, `kl_ratio` times in mean KL,
and must agree on the top token at `min_top1` of the positions whose F16 top-2 margin is not a near tie: a
margin under `tie_factor` times the largest change TQ2_0 makes to any logit at that position (two logits can
move towards each other by twice that), where llama.cpp's own int8 path may already swap them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def rel_rms(got: np.ndarray, want: np.ndarray) -> float:
    """RMS of (got - want) over RMS of want, over every logit of every position."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.sqrt(np.mean((got - want) ** 2)) / np.sqrt(np.mean(want**2)))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def mean_kl(got: np.ndarray, want: np.ndarray) -> float:
    """Mean over positions of KL(softmax(want) || softmax(got))."""
    lw, lg = _log_softmax(want), _log_softmax(got)
    return float(np.mean(np.sum(np.exp(lw) * (lw - lg), axis=-1)))


def top1_agreement(got: np.ndarray, want: np.ndarray, tie_margin) -> tuple[float, int]:
    """(share of positions where both pick the same top token, positions counted): positions whose top-2
    margin in `want` is below `tie_margin` (one number, or one per position) are left out."""
    want = np.asarray(want, np.float64)
    top2 = np.sort(want, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) >= tie_margin
    if not clear.any():
        return 1.0, 0
    same = np.argmax(got, axis=-1) == np.argmax(want, axis=-1)
    return float(same[clear].mean()), int(clear.sum())


@dataclass(frozen=True)
class ParityResult:
    """The decoder's and llama.cpp TQ2_0's distance from llama.cpp F16, and the verdict."""

    positions: int
    rel_rms: float
    kl: float
    top1: float
    rel_rms_limit: float
    kl_limit: float
    top1_limit: float
    baseline_rel_rms: float  # llama.cpp TQ2_0 vs F16
    baseline_kl: float
    tie_margin_median: float
    clear_positions: int

    @property
    def passed(self) -> bool:
        return self.rel_rms <= self.rel_rms_limit and self.kl <= self.kl_limit and self.top1 >= self.top1_limit

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def check_parity(decoder: np.ndarray, f16: np.ndarray, tq2: np.ndarray, *, rms_ratio: float = 1.5,
                 kl_ratio: float = 2.0, min_top1: float = 0.99, tie_factor: float = 2.0) -> ParityResult:
    """Compare decoder logits [positions, vocab] with llama.cpp F16's, calibrated by llama.cpp TQ2_0's."""
    base_rms, base_kl = rel_rms(tq2, f16), mean_kl(tq2, f16)
    tie = tie_factor * np.abs(np.asarray(tq2, np.float64) - np.asarray(f16, np.float64)).max(axis=-1)
    top1, clear = top1_agreement(decoder, f16, tie)
    return ParityResult(positions=len(f16), rel_rms=rel_rms(decoder, f16), kl=mean_kl(decoder, f16), top1=top1,
                        rel_rms_limit=rms_ratio * base_rms, kl_limit=kl_ratio * base_kl, top1_limit=min_top1,
                        baseline_rel_rms=base_rms, baseline_kl=base_kl, tie_margin_median=float(np.median(tie)),
                        clear_positions=clear)
