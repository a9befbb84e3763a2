"""The BitNet papers' energy model against the figures they published.

Confirmed published figures (and where they were confirmed):
- "71.4 times" less arithmetic energy for matrix multiplication at 7 nm: BitNet b1.58 paper (Ma et al. 2024,
  arXiv 2402.17764, Sec. 3 / Figure 3 left), quoted verbatim by secondary sources (e.g. thevalue.engineering,
  "BitNet b1.58 requires 71.4 times less energy for arithmetic operations during matrix multiplication").
- "0.028 J" estimated energy of BitNet b1.58 2B4T: the 2B4T technical report (arXiv 2504.12285, Table 1,
  "Energy (estimated)"), quoted by e.g. besthub.dev ("Estimated decoding energy is 0.028 J"). The model's
  configuration is its Hugging Face config.json: hidden 2560, intermediate 6912, 30 layers, 20 heads, 5 K/V
  heads, vocabulary 128256, tied embeddings.
- The b1.58 paper's text (Sec. 3, quoted on techecho.bigdataflowing.com item 39535800): "13B BitNet b1.58 is
  more efficient, in terms of latency, memory usage and energy consumption, than 3B FP16 LLM", and the same
  for 30B vs 7B FP16 and 70B vs 13B FP16.

From the team's note (/work/shared/notes/costmodel.md), not confirmed against the paper in the stored corpus
(Figure 3's bar labels are in an image): "41.2x at 70B".

NOT confirmed, so not asserted: the other bar labels of Figure 3 (1.3B, 3B, 7B, 13B) and the per-model rows of
BitNet's Table 3 (arXiv 2310.11453). The test below reports what the model gives for them instead.
"""

import pytest

from tritbench.costmodel import PROJECTIONS, Arch, energy_table, paper_energy, paper_ratios, per_op_ratio

SEVEN_NM = energy_table("7nm")

# BitNet b1.58 2B4T (Hugging Face microsoft/bitnet-b1.58-2B-4T config.json; gated ReLU^2 FFN: 3 matrices).
B158_2B4T = Arch(name="2B4T", hidden=2560, layers=30, ffn=6912, heads=20, kv_heads=5, head_dim=128, vocab=128256,
                 ffn_mats=3, tied_output=True)
# bitnet.cpp's 30B dummy configuration (microsoft/BitNet utils/generate-dummy-bitnet-model.py), K/V heads = heads.
BITNET_CPP_30B = Arch(name="30B", hidden=6656, layers=60, ffn=16384, heads=52, kv_heads=52, head_dim=128,
                      vocab=32002, tied_output=True)
# Two other 70B-class shapes the b1.58 paper may have used (it does not print its configurations):
# LLaMA-1 65B (Touvron et al. 2023: dim 8192, 80 layers, 64 heads, FFN 22016) and LLaMA-2 70B (FFN 28672, 8 K/V heads).
LLAMA_65B = Arch(name="llama-65b", hidden=8192, layers=80, ffn=22016, heads=64, kv_heads=64, head_dim=128, vocab=32000)
LLAMA2_70B = Arch(name="llama2-70b", hidden=8192, layers=80, ffn=28672, heads=64, kv_heads=8, head_dim=128,
                  vocab=32000)


def test_71_4x_per_operation():
    assert f"{per_op_ratio(SEVEN_NM):.1f}" == "71.4"


def test_2b4t_energy_estimate_is_reproduced():
    # Published to two significant figures (0.028 J), so the tolerance is half a unit of the last digit.
    e = paper_energy(B158_2B4T, SEVEN_NM)
    assert e.seq == 512
    assert e.ternary_joules == pytest.approx(0.028, abs=0.0005)


def test_70b_ratio_against_41_2x():
    # Tolerance 5 %: the paper does not print its 70B configuration, and plausible 70B-class shapes alone move
    # the ratio by about 3 % (the FFN width sets the linear share against the fixed FP16 attention term):
    # LLaMA-65B's shape gives 41.3x, LLaMA-2-70B's 42.2x, bitnet.cpp's 70B 42.5x. Any of them within 5 %.
    ratios = paper_ratios({"bitnet.cpp 70B": PROJECTIONS["70B"], "llama-65b": LLAMA_65B, "llama2-70b": LLAMA2_70B},
                          SEVEN_NM)
    for name, ratio in ratios.items():
        assert ratio == pytest.approx(41.2, rel=0.05), name
    assert ratios["llama-65b"] == pytest.approx(41.2, abs=0.1)


def test_larger_ternary_models_cost_less_than_smaller_fp16_ones():
    # The b1.58 paper's equivalences, energy part: 13B ternary < 3B FP16, 30B < 7B, 70B < 13B.
    p = {name: paper_energy(arch, SEVEN_NM) for name, arch in {**PROJECTIONS, "30B": BITNET_CPP_30B}.items()}
    assert p["13B"].ternary_joules < p["3B"].fp16_joules
    assert p["30B"].ternary_joules < p["7B"].fp16_joules
    assert p["70B"].ternary_joules < p["13B"].fp16_joules


def test_ratio_grows_with_model_size():
    # The attention term (FP16 in both models, ~2 s d per token) shrinks against the linear layers (~12 d^2).
    ratios = paper_ratios(PROJECTIONS, SEVEN_NM)
    values = list(ratios.values())
    assert values == sorted(values)
    assert 10 < ratios["700M"] < ratios["100B"] < per_op_ratio(SEVEN_NM)


def test_unconfirmed_figure_3_labels_are_reported_not_asserted():
    # What the model gives for Figure 3's other sizes with the projection configurations; the published labels
    # could not be confirmed here, so there is nothing to compare them with beyond the range they must lie in.
    ratios = paper_ratios({k: PROJECTIONS[k] for k in ("1.3B", "3B", "7B", "13B", "70B")}, SEVEN_NM)
    assert all(15 < r < 45 for r in ratios.values()), ratios


def test_paper_model_leaves_out_the_lm_head_and_memory():
    arch = PROJECTIONS["7B"]
    bigger_vocab = arch.replace(vocab=arch.vocab * 4)
    assert paper_energy(bigger_vocab, SEVEN_NM).to_dict()["fp16_joules"] == paper_energy(arch, SEVEN_NM).fp16_joules
    # Attention is FP16 in both models: the same joules on both sides.
    e = paper_energy(arch, SEVEN_NM)
    assert e.fp16_parts["attention_mul"] == e.ternary_parts["attention_mul"] > 0
