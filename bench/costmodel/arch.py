"""Arch: the dimensions the cost model needs, from a preset, a GGUF file's metadata or flags; and the
configurations of the papers' model sizes used for projections."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tritbench.costmodel.errors import CostModelError
from tritbench.models.spec import Linear, linear_layers

# The BitNet papers' energy model is stated for a 512-token input (arXiv 2310.11453, Table 3).
PAPER_SEQ = 512
_INT_FIELDS = ("hidden", "layers", "ffn", "ffn_mats", "heads", "kv_heads", "head_dim", "vocab", "seq")


@dataclass(frozen=True)
class Arch:
    """A decoder-only transformer's shape.

    `ffn_mats` is the number of FFN matrices per block: 3 for gated FFNs (LLaMA, BitNet b1.58: gate, up,
    down), 2 for a plain up/down FFN. `seq` is the sequence length the energy figures are for (the token
    at position `seq` attends to `seq` positions). `tied_output` reuses the token embedding as the LM head
    (one tensor in memory, still read in full for every token). `embd_type`/`output_type` are the GGML
    types of the token embedding and of the output matrix.
    """

    name: str
    hidden: int
    layers: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    ffn_mats: int = 3
    seq: int = PAPER_SEQ
    tied_output: bool = False
    embd_type: str = "f16"
    output_type: str = "f16"
    source: str = ""

    def __post_init__(self) -> None:
        for f in _INT_FIELDS:
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise CostModelError(f"architecture '{self.name}': {f.replace('_', '-')} must be a positive integer, "
                                  f"got {v!r}")
        if self.ffn_mats not in (2, 3):
            raise CostModelError(f"architecture '{self.name}': ffn-mats must be 2 or 3, got {self.ffn_mats}")
        if self.heads % self.kv_heads:
            raise CostModelError(f"architecture '{self.name}': heads ({self.heads}) must be a multiple of "
                              f"kv-heads ({self.kv_heads})")

    @property
    def q_dim(self) -> int:
        """Output size of the Q projection and input size of the attention output (heads x head_dim)."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Output size of each of the K and V projections (kv_heads x head_dim)."""
        return self.kv_heads * self.head_dim

    def linear_layers(self) -> dict[str, Linear]:
        """One block's linear layers as {name: Linear(in_features, out_features)}."""
        return linear_layers(self.hidden, self.q_dim, self.kv_dim, self.ffn, gated=self.ffn_mats == 3)

    def n_linear_params(self) -> int:
        """Weights in all blocks' linear layers (the tensors that are quantized)."""
        return self.layers * sum(i * o for i, o in self.linear_layers().values())

    def n_embd_params(self) -> int:
        """Weights in the token embedding (vocab x hidden)."""
        return self.vocab * self.hidden

    def n_norm_params(self) -> int:
        """RMSNorm weights: two per block and the final one (bitnet's sub-norms are not counted)."""
        return (2 * self.layers + 1) * self.hidden

    def n_params(self) -> int:
        """All weights: embedding, output (unless tied), norms and linear layers."""
        output = 0 if self.tied_output else self.n_embd_params()
        return self.n_embd_params() + output + self.n_norm_params() + self.n_linear_params()

    def replace(self, **changes: Any) -> Arch:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict of all fields plus the parameter count."""
        return {**dataclasses.asdict(self), "n_params": self.n_params()}


def from_spec(spec: Any, seq: int = PAPER_SEQ) -> Arch:
    """Arch of a models.ModelSpec (a synthetic preset): gated FFN, its embedding/output types and tying."""
    return Arch(
        name=spec.name, hidden=spec.hidden, layers=spec.layers, ffn=spec.ffn, heads=spec.heads,
        kv_heads=spec.kv_heads, head_dim=spec.hidden // spec.heads, vocab=spec.vocab, ffn_mats=3, seq=seq,
        tied_output=spec.tied_output, embd_type=spec.embd_type, output_type=spec.output_type,
        source=f"preset {spec.name}",
    )


def from_gguf_info(info: Mapping[str, Any], metadata: Mapping[str, Any] | None = None,
                   tensor_names: tuple[str, ...] = (), seq: int = PAPER_SEQ) -> Arch:
    """Arch of a GGUF model from read_model_info(...).to_dict() and, when the file carries no tritbench
    spec, its hparams metadata (`<arch>.embedding_length`, `.block_count`, `.feed_forward_length`,
    `.attention.head_count[_kv]`, `.attention.key_length`). `tensor_names` tells whether an FFN gate and an
    output matrix exist. CostModelError if a needed key is missing.
    """
    embd_type = info.get("embd_type") or "f16"
    output_type = info.get("output_type")
    tied = output_type is None
    spec = info.get("spec")
    name = str(info.get("name") or "model")
    if spec:
        from tritbench.models import ModelSpec

        arch = from_spec(ModelSpec.from_dict(spec), seq)
        return arch.replace(embd_type=embd_type, output_type=output_type or embd_type, tied_output=tied,
                            source=f"GGUF {name} (tritbench spec)")
    meta = metadata or {}
    prefix = info.get("architecture") or meta.get("general.architecture")

    def need(key: str) -> int:
        value = meta.get(f"{prefix}.{key}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise CostModelError(f"GGUF {name}: metadata has no integer {prefix}.{key}; give the shape with flags")
        return value

    hidden, heads = need("embedding_length"), need("attention.head_count")
    kv = meta.get(f"{prefix}.attention.head_count_kv")
    head_dim = meta.get(f"{prefix}.attention.key_length")
    vocab = info.get("n_vocab") or meta.get(f"{prefix}.vocab_size")
    if not isinstance(vocab, int):
        raise CostModelError(f"GGUF {name}: no vocabulary size in its metadata; give --vocab")
    gated = any(n.endswith("ffn_gate.weight") for n in tensor_names) if tensor_names else True
    return Arch(
        name=name, hidden=hidden, layers=need("block_count"), ffn=need("feed_forward_length"), heads=heads,
        kv_heads=kv if isinstance(kv, int) and kv > 0 else heads,
        head_dim=head_dim if isinstance(head_dim, int) and head_dim > 0 else hidden // heads,
        vocab=vocab, ffn_mats=3 if gated else 2, seq=seq, tied_output=tied, embd_type=embd_type,
        output_type=output_type or embd_type, source=f"GGUF {name} (metadata)",
    )


# The model sizes of the BitNet b1.58 paper (arXiv 2402.17764: 700M, 1.3B, 3B in its Table 1; 1.3B-70B in
# its Figures 2-3) and of bitnet.cpp (arXiv 2410.16144: up to 100B). The b1.58 paper does not print its
# configurations; 700M/1.3B/3B are the config.json files of the 1bitLLM reproductions on Hugging Face
# (1bitLLM/bitnet_b1_58-large, -xl, -3B: "hypers ... as suggested" by the authors), and 7B-100B are the
# dummy-model configurations bitnet.cpp benchmarks with (microsoft/BitNet, utils/generate-dummy-bitnet-model.py,
# `model_config`: K/V heads = heads, vocabulary 32002, no separate output matrix).
_1BIT = "1bitLLM/bitnet_b1_58-{} config.json (Hugging Face), reproduction of arXiv 2402.17764"
_BNCPP = "microsoft/BitNet utils/generate-dummy-bitnet-model.py model_config['{}'] (bitnet.cpp, arXiv 2410.16144)"


def _paper_arch(name: str, hidden: int, layers: int, ffn: int, heads: int, source: str) -> Arch:
    return Arch(name=name, hidden=hidden, layers=layers, ffn=ffn, heads=heads, kv_heads=heads,
                head_dim=hidden // heads, vocab=32002, ffn_mats=3, seq=PAPER_SEQ, tied_output=True,
                source=source)


PROJECTIONS: dict[str, Arch] = {
    a.name: a
    for a in (
        _paper_arch("700M", 1536, 24, 4096, 16, _1BIT.format("large")),
        _paper_arch("1.3B", 2048, 24, 5460, 32, _1BIT.format("xl")),
        _paper_arch("3B", 3200, 26, 8640, 32, _1BIT.format("3B")),
        _paper_arch("7B", 4096, 32, 12032, 32, _BNCPP.format("7B")),
        _paper_arch("13B", 5120, 40, 13824, 40, _BNCPP.format("13B")),
        _paper_arch("70B", 8192, 80, 24576, 64, _BNCPP.format("70B")),
        _paper_arch("100B", 8192, 72, 45568, 64, _BNCPP.format("100B")),
    )
}
