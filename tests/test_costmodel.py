"""The cost model's parts on small cases computed by hand: energy table, counts, bytes per token,
roofline, sparsity, data movement, TOML overrides, projections, GGUF adapters and the join with records."""

import math

import pandas as pd
import pytest

from tritbench.costmodel import (
    FORMATS,
    PROJECTIONS,
    Arch,
    bitlinear_ops,
    bytes_per_token,
    energy_table,
    from_gguf_info,
    from_spec,
    join_results,
    matmul_ops,
    paper_energy,
    per_op_ratio,
    projection_rows,
    roofline_tokens_per_s,
    sequence_ops,
    token_energy,
    weights_bytes,
    workload_bytes,
)
from tritbench.costmodel.errors import CostModelError
from tritbench.costmodel.full import token_arith_parts
from tritbench.models import get_preset

PJ = 1e-12


@pytest.fixture(autouse=True)
def _own_home(tb_home, monkeypatch):
    """Model files and their digest cache go to the test session's home, never ~/.cache."""
    monkeypatch.setenv("TRITBENCH_HOME", str(tb_home))


# A toy model small enough to count every operation by hand.
TOY = Arch(name="toy", hidden=4, layers=1, ffn=8, heads=2, kv_heads=2, head_dim=2, vocab=10, ffn_mats=3, seq=3)


def test_per_operation_ratio_is_71_4_at_7nm_and_50_at_45nm():
    # (0.34 + 0.16) / 0.007 = 71.43 (the b1.58 paper's "71.4 times"); (1.1 + 0.4) / 0.03 = 50.
    assert per_op_ratio(energy_table("7nm")) == pytest.approx(0.50 / 0.007)
    assert round(per_op_ratio(energy_table("7nm")), 1) == 71.4
    assert per_op_ratio(energy_table("45nm")) == pytest.approx(50.0)


def test_energy_table_carries_sources():
    t = energy_table("7nm")
    assert "PokeBNN" in t.sources["ops"] and "2310.11453" in t.sources["ops"]
    assert "Horowitz" in energy_table("45nm").sources["ops"] and "Horowitz" in t.sources["memory"]
    assert t.joules_per_byte() == pytest.approx(160 * PJ)  # 20 pJ/bit from DRAM


def test_bitnet_matmul_formulas_by_hand():
    # (2 x 3) @ (3 x 4): 2*(3-1)*4 = 16 adds, 2*3*4 = 24 multiplies; BitLinear rescales 2*4 + 2*3 = 14.
    full = matmul_ops(2, 3, 4)
    assert (full.adds, full.muls) == (16, 24)
    bit = bitlinear_ops(2, 3, 4)
    assert (bit.adds, bit.muls) == (16, 14)
    with pytest.raises(CostModelError):
        matmul_ops(0, 3, 4)


def test_sequence_counts_of_the_toy_model_by_hand():
    ops = sequence_ops(TOY)
    # Linear layers (in, out): q, k, v, o (4, 4); gate, up (4, 8); down (8, 4); s = 3 tokens.
    assert ops.linear_muls == 3 * (4 * 16 + 3 * 32)  # 480
    assert ops.linear_adds == 3 * (4 * 3 * 4 + 2 * 3 * 8 + 7 * 4)  # 372
    assert ops.bitlinear_adds == ops.linear_adds
    assert ops.bitlinear_muls == 3 * (4 * 8 + 3 * 12)  # s (in + out) summed: 204
    # Per head: Q K^T is (3x2)@(2x3): 18 mul, 9 add; A V is (3x3)@(3x2): 18 mul, 12 add; two heads.
    assert (ops.attention_muls, ops.attention_adds) == (72, 42)


def test_paper_energy_of_the_toy_model_by_hand():
    e = paper_energy(TOY, energy_table("7nm"))
    fp16 = 480 * 0.34 + 372 * 0.16 + 72 * 0.34 + 42 * 0.16  # 253.92 pJ
    ternary = 372 * 0.007 + 204 * 0.34 + 72 * 0.34 + 42 * 0.16  # 103.164 pJ
    assert e.fp16_joules == pytest.approx(fp16 * PJ)
    assert e.ternary_joules == pytest.approx(ternary * PJ)
    assert e.ratio == pytest.approx(fp16 / ternary)
    assert e.per_token("f16") == pytest.approx(fp16 * PJ / 3) and e.per_token("q4_0") is None


# tiny: hidden 256, 2 layers, ffn 512, 4 heads / 2 KV heads of 64, vocab 1536, f16 embedding and output.
TINY_LINEAR = 2 * (256 * 256 * 2 + 256 * 128 * 2 + 3 * 256 * 512)  # 1,179,648 weights
TINY_FIXED = 1536 * 256 * 2 + 256 * 2 + (2 * 2 + 1) * 256 * 4  # output f16 + one embedding row + f32 norms


@pytest.mark.parametrize("fmt,bits", [("f16", 16), ("q4_0", 4.5), ("tq2_0", 2.0625), ("tq1_0", 1.6875),
                                      ("q8_0", 8.5)])
def test_bytes_per_token_of_tiny_by_hand(fmt, bits):
    arch = from_spec(get_preset("tiny"))
    assert arch.n_linear_params() == TINY_LINEAR == 1_179_648
    tb = bytes_per_token(arch, fmt, depth=0)
    assert tb.linear == TINY_LINEAR * bits / 8
    assert tb.total == TINY_LINEAR * bits / 8 + TINY_FIXED
    # KV cache at depth 100: K and V, 2 layers, 2 KV heads x 64, f16.
    assert bytes_per_token(arch, fmt, depth=100).kv == 2 * 2 * 128 * 100 * 2


def test_bits_per_weight_are_ggmls():
    from tritbench.costmodel import BITS_PER_WEIGHT

    # block bytes x 8 / block weights as ggml defines them (ggml.c type traits), worked out by hand
    published = {"f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 34 * 8 / 32, "q6_k": 210 * 8 / 256,
                 "q4_k": 144 * 8 / 256, "q4_0": 18 * 8 / 32, "tq2_0": 66 * 8 / 256, "tq1_0": 54 * 8 / 256}
    assert BITS_PER_WEIGHT == published


def test_bytes_per_token_match_the_synthesized_files(tiny_models):
    from tritbench.models import read_model_info

    arch = from_spec(get_preset("tiny"))
    for fmt in FORMATS:
        info = read_model_info(tiny_models[fmt])
        assert bytes_per_token(arch, fmt).linear == info.n_linear_params * info.bits_per_weight / 8
        # Model memory is the file minus its header and metadata.
        assert 0 < info.file_bytes - weights_bytes(arch, fmt) < 64 * 1024


def test_roofline_bound():
    assert roofline_tokens_per_s(20.0, 1e9) == pytest.approx(20.0)
    arch = from_spec(get_preset("tiny"))
    per_token = TINY_LINEAR * 2.0625 / 8 + TINY_FIXED
    assert roofline_tokens_per_s(25.0, bytes_per_token(arch, "tq2_0").total) == pytest.approx(25e9 / per_token)
    with pytest.raises(CostModelError):
        roofline_tokens_per_s(0, 1e6)


def test_workload_bytes_sum_decode_steps():
    arch = from_spec(get_preset("tiny"))
    tg = workload_bytes(arch, "tq2_0", n_prompt=0, n_gen=3, depth=10)
    steps = sum(bytes_per_token(arch, "tq2_0", d).total for d in (10, 11, 12))
    assert tg == pytest.approx(steps)
    # A prompt reads the weights at least once: far less than once per token.
    pp = workload_bytes(arch, "tq2_0", n_prompt=64, n_gen=0)
    assert bytes_per_token(arch, "tq2_0").total < pp < 2 * bytes_per_token(arch, "tq2_0").total


def test_sparsity_skips_the_zero_share_of_adds():
    arch, t = from_spec(get_preset("tiny")), energy_table("7nm")
    dense = token_arith_parts(arch, "tq2_0", t, 512, None)
    sparse = token_arith_parts(arch, "tq2_0", t, 512, 0.25)
    assert sparse["linear"] == pytest.approx(0.75 * dense["linear"])
    assert dense["linear"] == pytest.approx(TINY_LINEAR * 0.007 * PJ)
    for part in ("attention", "lm_head", "block_scales", "act_quant"):
        assert sparse[part] == dense[part]
    # An FP16 multiply-accumulate unit does not skip zeros.
    assert token_arith_parts(arch, "f16", t, 512, 0.25) == token_arith_parts(arch, "f16", t, 512, None)
    with pytest.raises(CostModelError):
        token_energy(arch, "tq2_0", t, zero_fraction=1.5)


def test_memory_term_scales_with_bytes_per_token():
    arch, t = from_spec(get_preset("small")), energy_table("7nm")
    energies = {fmt: token_energy(arch, fmt, t) for fmt in FORMATS}
    for fmt, e in energies.items():
        assert e.memory_bytes == bytes_per_token(arch, fmt, arch.seq).total
        assert e.memory_j == pytest.approx(e.memory_bytes * 160 * PJ)
        assert e.total_j == pytest.approx(e.arith_j + e.memory_j)
    ratio = energies["f16"].memory_j / energies["tq1_0"].memory_j
    assert ratio == pytest.approx(energies["f16"].memory_bytes / energies["tq1_0"].memory_bytes)
    # Serving half the bytes from a 1 MB cache (12.5 pJ/B) changes the term accordingly.
    mixed = energy_table("7nm", "[memory_mix]\ndram = 0.5\ncache_1mb = 0.5\n")
    assert token_energy(arch, "tq2_0", mixed).memory_j == pytest.approx(
        energies["tq2_0"].memory_bytes * (0.5 * 160 + 0.5 * 12.5) * PJ)


def test_toml_override_changes_results():
    arch = from_spec(get_preset("tiny"))
    base = energy_table("7nm")
    custom = energy_table("7nm", '[ops."7nm"]\nint8_add = 0.014\n[memory]\ndram = 80.0\n')
    assert per_op_ratio(custom) == pytest.approx(per_op_ratio(base) / 2)
    assert paper_energy(arch, custom).ternary_joules > paper_energy(arch, base).ternary_joules
    assert paper_energy(arch, custom).fp16_joules == paper_energy(arch, base).fp16_joules
    assert token_energy(arch, "f16", custom).memory_j == pytest.approx(token_energy(arch, "f16", base).memory_j / 2)
    assert "user TOML" in custom.sources["ops"] and "user TOML" in custom.sources["memory"]
    # The other node is untouched; a new node needs every operation.
    assert energy_table("45nm", '[ops."7nm"]\nint8_add = 1.0\n').ops_pj["int8_add"] == 0.03
    full = "\n".join(f"{k} = 1.0" for k in ("fp32_add", "fp32_mul", "fp16_add", "fp16_mul", "int8_add", "int8_mul"))
    assert per_op_ratio(energy_table("3nm", f'[ops."3nm"]\n{full}\n')) == 2.0


@pytest.mark.parametrize("text,fragment", [
    ("[opps]\nx = 1\n", "unknown key(s) opps"),
    ('[ops."7nm"]\nfp8_add = 0.1\n', "unknown key ops.7nm.fp8_add"),
    ("[memory]\nl3 = 5.0\n", "unknown key memory.l3"),
    ('[ops."7nm"]\nint8_add = -1\n', "must be a non-negative number"),
    ('[ops."7nm"]\nint8_add = "a"\n', "must be a non-negative number"),
    ("[memory_mix]\ndram = 0.5\n", "must sum to 1"),
    ('[ops."5nm"]\nint8_add = 0.1\n', "must set all of"),
    ("[ops\n", "invalid TOML"),
])
def test_toml_override_rejects_bad_tables(text, fragment):
    with pytest.raises(CostModelError) as exc:
        energy_table("7nm", text)
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_node_and_bad_arch():
    with pytest.raises(CostModelError, match="unknown process node '5nm'"):
        energy_table("5nm")
    with pytest.raises(CostModelError, match="hidden must be a positive integer"):
        Arch(name="x", hidden=-4, layers=1, ffn=8, heads=2, kv_heads=2, head_dim=2, vocab=10)
    with pytest.raises(CostModelError, match="ffn-mats must be 2 or 3"):
        TOY.replace(ffn_mats=4)
    with pytest.raises(CostModelError, match="multiple of kv-heads"):
        TOY.replace(kv_heads=3)


def test_projections_have_seven_sizes_and_four_formats():
    rows = projection_rows(energy_table("7nm"), {"probed": 20.0, "user": None})
    assert list(PROJECTIONS) == ["700M", "1.3B", "3B", "7B", "13B", "70B", "100B"]
    assert len(rows) == 28
    assert {(r["size"], r["format"]) for r in rows} == {(s, f) for s in PROJECTIONS for f in FORMATS}
    for r in rows:
        assert r["roofline_tokens_per_s"]["user"] is None
        assert r["roofline_tokens_per_s"]["probed"] == pytest.approx(20e9 / r["bytes_per_token"])
        assert r["total_j_per_token"] > r["arith_j_per_token"] > 0
        assert r["source"]
    by = {(r["size"], r["format"]): r for r in rows}
    # Parameter counts land near the names (tied embeddings, vocabulary 32002).
    for size, nominal in (("700M", 0.7e9), ("3B", 3.3e9), ("7B", 7e9), ("13B", 13e9), ("70B", 70e9), ("100B", 100e9)):
        assert by[(size, "f16")]["n_params"] == pytest.approx(nominal, rel=0.1)
    assert by[("70B", "tq1_0")]["memory_bytes"] < by[("70B", "tq2_0")]["memory_bytes"] < by[("70B", "q4_0")][
        "memory_bytes"] < by[("70B", "f16")]["memory_bytes"]


def test_gguf_adapters_read_shape_and_sparsity(tiny_models):
    from tritbench.costmodel.adapters import gguf_zero_fraction, preset_zero_fraction, read_gguf_arch
    from tritbench.models import read_model_info
    from tritbench.models.gguf_layout import read_layout

    spec = get_preset("tiny")
    expected = from_spec(spec)
    for fmt in ("f16", "q4_0", "tq1_0", "tq2_0"):
        arch, info = read_gguf_arch(tiny_models[fmt])
        assert arch.linear_layers() == expected.linear_layers() and arch.vocab == 1536
        # Synthetic weights are uniform over {-1, 0, +1}: about a third are zero, in every format.
        z = gguf_zero_fraction(tiny_models[fmt])
        assert z == pytest.approx(1 / 3, abs=0.02)
    assert preset_zero_fraction(spec) == pytest.approx(1 / 3, abs=0.01)
    # Without the tritbench spec the hparams metadata gives the same shape.
    info = read_model_info(tiny_models["tq2_0"]).to_dict() | {"spec": None}
    layout = read_layout(tiny_models["tq2_0"])
    meta_arch = from_gguf_info(info, layout.metadata, tuple(t.name for t in layout.tensors))
    assert meta_arch.linear_layers() == expected.linear_layers()
    assert (meta_arch.heads, meta_arch.kv_heads, meta_arch.head_dim, meta_arch.tied_output) == (4, 2, 64, False)
    with pytest.raises(CostModelError, match="no integer llama.embedding_length"):
        from_gguf_info(info, {}, ())


def _record(fmt: str, tps: float, **extra) -> dict:
    spec = get_preset("small").to_dict()
    rec = {
        "schema": "tritbench.result/1", "status": "ok", "run_id": "r", "case_id": f"{fmt}-{tps}",
        "backend": {"name": "llamacpp"}, "settings": {"n_threads": 1}, "machine": {"arch": "x86_64"},
        "model": {"format": fmt, "n_params": get_preset("small").n_params(), "name": "small", "spec": spec,
                  "embd_type": "f16", "output_type": "f16", "path": "/nowhere/small.gguf"},
        "workload": {"kind": "tg", "n_prompt": 0, "n_gen": 64, "depth": 0, "name": "tg64"},
        "metrics": {"tokens_per_s": {"median": tps}, "energy": {"source": "unavailable:no reader"}},
    }
    for key, value in extra.items():
        section, _, name = key.partition("__")
        rec[section][name] = value
    return rec


def test_join_gives_percent_of_roofline_and_energy():
    records = [
        _record("tq2_0", 150.0, metrics__read_bandwidth={"gbps": 20.0, "n_threads": 1}),
        _record("f16", 30.0),
        _record("tq1_0", 100.0, metrics__energy={"source": "measured:rapl/package-0", "joules": 5.0,
                                                 "window_s": 2.0}),
        {**_record("tq2_0", 1.0), "status": "failed"},
        _record("tq2_0", 120.0, model__spec=None),
        _record("tq2_0", 100.0, metrics__energy={"source": "measured:rapl/package-0", "joules": 9.0,
                                                 "joules_per_token": 0.03, "net_joules_per_token": 0.01}),
    ]
    df = pd.json_normalize(records, sep=".")
    out = join_results(df, bandwidth_gbps=10.0, table=energy_table("7nm"), zero_fraction=1 / 3)
    arch = from_spec(get_preset("small"))
    # tg64 from depth 0: the KV cache read grows from 0 to 63 tokens.
    per_token = workload_bytes(arch, "tq2_0", 0, 64, 0) / 64
    first = out.iloc[0]
    assert first["cost.bandwidth_source"] == "record" and first["cost.bandwidth_gbps"] == 20.0
    assert first["cost.bytes_per_token"] == pytest.approx(per_token)
    assert first["cost.roofline_tokens_per_s"] == pytest.approx(20e9 / per_token)
    assert first["cost.pct_of_roofline"] == pytest.approx(100 * 150 / (20e9 / per_token))
    assert first["cost.measured_j_per_token"] is None and "no measured energy" in first["cost.note"]
    second = out.iloc[1]
    assert second["cost.bandwidth_source"] == "argument" and second["cost.bandwidth_gbps"] == 10.0
    assert second["cost.paper_j_per_token"] == pytest.approx(paper_energy(arch, energy_table()).fp16_joules / 512)
    third = out.iloc[2]
    # 5 J over 2 s at 100 tokens/s: 2.5 W / 100 t/s = 25 mJ per token.
    assert third["cost.measured_j_per_token"] == pytest.approx(0.025)
    assert third["cost.measured_over_modelled"] == pytest.approx(0.025 / third["cost.modelled_j_per_token"])
    assert third["cost.measured_net_j_per_token"] is None
    assert out.iloc[3]["cost.note"] == "case failed" and out.iloc[3]["cost.roofline_tokens_per_s"] is None
    # The energy block of tritbench.measure.energy.aggregate: J/token given directly, gross and above idle.
    sixth = out.iloc[5]
    assert (sixth["cost.measured_j_per_token"], sixth["cost.measured_net_j_per_token"]) == (0.03, 0.01)
    assert sixth["cost.net_over_modelled"] == pytest.approx(0.01 / sixth["cost.modelled_j_per_token"])
    assert out.iloc[4]["cost.pct_of_roofline"] is None and "architecture unknown" in out.iloc[4]["cost.note"]
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in out["cost.pct_of_roofline"] if v is not None)


def test_join_reads_records_through_load_results(tmp_path):
    import json

    from tritbench import load_results

    path = tmp_path / "run-x.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (_record("tq2_0", 150.0), _record("q4_0", 80.0))) + "\n")
    out = join_results(load_results(path), bandwidth_gbps=20.0)
    assert list(out["model.format"]) == ["tq2_0", "q4_0"]
    assert all(0 < p < 100 for p in out["cost.pct_of_roofline"])
    # No bandwidth at all: the bound is None and the note says why.
    bare = join_results(load_results(path))
    assert all(v is None for v in bare["cost.roofline_tokens_per_s"])
    assert "no read bandwidth" in bare.iloc[0]["cost.note"]
