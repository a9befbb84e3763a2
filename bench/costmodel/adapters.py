"""The cost model's only readers: a GGUF file's shape and the zero fraction of actual weights.

Kept apart from the model so everything else in tritbench.costmodel stays a pure function of its inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tritbench.costmodel.arch import PAPER_SEQ, Arch, from_gguf_info

# Rows read per linear tensor when measuring sparsity: enough for a stable fraction (~1e5+ weights per
# tensor), little enough that a 7B file is sampled in well under a second.
SAMPLE_ROWS = 64


def read_gguf_arch(path: str | os.PathLike[str], seq: int = PAPER_SEQ) -> tuple[Arch, dict]:
    """(Arch, read_model_info dict) of a GGUF file; models.ModelError for a missing or corrupt file."""
    from tritbench.models import read_model_info
    from tritbench.models.gguf_layout import read_layout

    info = read_model_info(path, digest=False).to_dict()  # the shape is all the cost model needs
    layout = read_layout(Path(info["path"]))
    names = tuple(t.name for t in layout.tensors)
    return from_gguf_info(info, layout.metadata, names, seq), info


def gguf_zero_fraction(path: str | os.PathLike[str], sample_rows: int = SAMPLE_ROWS) -> float | None:
    """Fraction of exactly-zero weights in the first `sample_rows` rows of every block linear tensor of a
    GGUF file (dequantized with gguf's reference code), or None if it has no linear tensor gguf can decode."""
    from gguf import GGML_QUANT_SIZES, quants

    from tritbench.models.gguf_info import LINEAR_RE
    from tritbench.models.gguf_layout import read_layout

    file = Path(path).expanduser().absolute()
    layout = read_layout(file)
    zeros = total = 0
    with open(file, "rb") as fh:
        for t in layout.tensors:
            if not LINEAR_RE.match(t.name) or len(t.shape) != 2:
                continue
            block, type_size = GGML_QUANT_SIZES[t.ggml_type]
            row_bytes = t.shape[0] // block * type_size
            rows = min(sample_rows, t.shape[1])
            fh.seek(t.start)
            raw = np.frombuffer(fh.read(rows * row_bytes), dtype=np.uint8)
            try:
                values = quants.dequantize(raw.reshape(rows, row_bytes), t.ggml_type)
            except (NotImplementedError, ValueError):
                continue
            zeros += int(np.count_nonzero(values == 0))
            total += values.size
    return zeros / total if total else None


def preset_zero_fraction(spec) -> float:
    """Zero fraction of a synthetic preset's actual weights: its first block's K projection, generated
    exactly as tritbench.models.synth writes it (every linear tensor is drawn the same way)."""
    from tritbench.models.synth import TensorPlan, make_tensor

    plan = TensorPlan("blk.0.attn_k.weight", spec.linear_layers()["attn_k"].rows_cols, "linear")
    values = make_tensor(spec, plan)
    return float(np.count_nonzero(values == 0) / values.size)
