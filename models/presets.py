"""Named model shapes, from a 2 M-param test model to a BitNet-b1.58-3B-sized one.

| preset      | arch   | hidden | layers | ffn  | heads/kv | vocab | params        |
|-------------|--------|-------:|-------:|-----:|---------:|------:|--------------:|
| tiny        | llama  |    256 |      2 |  512 |    4/2   |  1536 |     1,967,360 |
| tiny-bitnet | bitnet |    256 |      2 |  512 |    4/2   |  1536 |     1,575,680 |
| small       | llama  |    768 |     13 | 3072 |   12/12  | 32000 |   171,856,128 |
| medium      | llama  |   1024 |     24 | 3584 |   16/16  | 32000 |   430,490,624 |
| 1b          | llama  |   2048 |     16 | 8192 |   32/8   | 32000 | 1,104,218,112 |
| 3b          | llama  |   3072 |     26 | 8704 |   32/32  | 32000 | 3,263,855,616 |
| 7b          | llama  |   4096 |     32 | 11008|   32/32  | 32000 | 6,738,415,616 |

Counts are ModelSpec.n_params(): every tensor written, embeddings and norms included. "1b" follows
Llama-3.2-1B's shape (GQA 32/8). "3b" is BitNet b1.58 3B (hidden 3200, ffn 8640, 26 layers, 32 heads)
rounded to multiples of 256, with an untied output like the original. "7b" has LLaMA-7B's shape
(Touvron et al. 2023, table 2: dim 4096, 32 layers, 32 heads; FFN 11008), whose linear layers are the
usual kernel benchmark shapes 4096x4096, 4096x11008 and 11008x4096.
"""

from __future__ import annotations

from .errors import ModelError
from .spec import ModelSpec

_SEED = 1234
_VOCAB = 32000

PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("tiny", "llama", 256, 2, 512, 4, 2, 1536, n_ctx=512, seed=_SEED),
        ModelSpec("tiny-bitnet", "bitnet", 256, 2, 512, 4, 2, 1536, n_ctx=512, seed=_SEED),
        ModelSpec("small", "llama", 768, 13, 3072, 12, 12, _VOCAB, n_ctx=2048, seed=_SEED),
        ModelSpec("medium", "llama", 1024, 24, 3584, 16, 16, _VOCAB, n_ctx=2048, seed=_SEED),
        ModelSpec("1b", "llama", 2048, 16, 8192, 32, 8, _VOCAB, n_ctx=2048, seed=_SEED),
        ModelSpec("3b", "llama", 3072, 26, 8704, 32, 32, _VOCAB, n_ctx=2048, seed=_SEED),
        ModelSpec("7b", "llama", 4096, 32, 11008, 32, 32, _VOCAB, n_ctx=2048, seed=_SEED),
    )
}

# The size each preset's name promises; tests hold n_params() within 10 % of it.
NOMINAL_PARAMS: dict[str, float] = {
    "tiny": 2e6,
    "tiny-bitnet": 1.6e6,
    "small": 170e6,
    "medium": 440e6,
    "1b": 1.1e9,
    "3b": 3.0e9,
    "7b": 6.7e9,
}


def get_preset(name: str) -> ModelSpec:
    """The preset called name (case-insensitive); ModelError listing the known names if there is none."""
    spec = PRESETS.get(name.strip().lower()) if isinstance(name, str) else None
    if spec is None:
        raise ModelError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
    return spec
