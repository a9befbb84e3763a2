"""Synthesis: caching, atomic writes, determinism and exact ternary round trips (real gguf, no mocks)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

import tritbench.models.synth as synth
from tritbench.models import FORMATS, ModelError, ModelSpec, cache_dir, get_preset, synthesize, synthesize_many
from tritbench.models.synth import linear_scale, model_path, vocab_tokens

TINY = get_preset("tiny")
LINEAR_SUFFIXES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@pytest.fixture(autouse=True, scope="module")
def _tritbench_home(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITBENCH_HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synthesize_many(TINY, FORMATS, cache=tmp_path_factory.mktemp("cache"))


def linear_tensors(path: Path) -> dict[str, tuple[GGMLQuantizationType, np.ndarray]]:
    reader = GGUFReader(path)
    return {
        t.name: (t.tensor_type, np.array(t.data))
        for t in reader.tensors
        if t.name.startswith("blk.") and t.name.split(".")[2] in LINEAR_SUFFIXES
    }


def test_cache_dir_follows_tritbench_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRITBENCH_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "models"
    monkeypatch.delenv("TRITBENCH_HOME")
    assert cache_dir() == Path.home() / ".cache" / "tritbench" / "models"


def test_all_formats_land_at_their_cache_paths(tiny_files: dict[str, Path]) -> None:
    assert list(tiny_files) == list(FORMATS)
    for fmt, path in tiny_files.items():
        assert path.is_file()
        assert path.name == f"tiny-{fmt}.gguf"
        assert path.parent.name == f"tiny-{TINY.spec_hash()}"
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(p.name for p in tiny_files.values())


def test_synthesize_defaults_to_cache_dir_and_reuses_the_file(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRITBENCH_HOME", str(tmp_path))
    path = synthesize(TINY, "TQ2_0")
    assert path == tmp_path / "models" / f"tiny-{TINY.spec_hash()}" / "tiny-tq2_0.gguf"
    before = path.stat().st_mtime_ns
    assert synthesize(TINY, "tq2_0") == path
    assert synthesize_many(TINY, ["tq2_0"]) == {"tq2_0": path}
    assert path.stat().st_mtime_ns == before


def test_unknown_format_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown format 'q5' \(known: f16, q8_0, q4_0, tq1_0, tq2_0; made by "
                                         r"a backend from one of them: tern2, tern1.67, nbits2, i2_s"):
        synthesize(TINY, "q5", cache=tmp_path)
    assert not any(tmp_path.iterdir())


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    again = synthesize(TINY, "tq1_0", cache=tmp_path / "again")
    assert again.read_bytes() == tiny_files["tq1_0"].read_bytes()
    reseeded = synthesize(dataclasses.replace(TINY, seed=TINY.seed + 1), "tq1_0", cache=tmp_path)
    assert reseeded.parent != again.parent
    assert reseeded.read_bytes() != again.read_bytes()


def test_tensors_do_not_depend_on_the_other_tensors(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    deeper = dataclasses.replace(TINY, layers=3)
    shared = linear_tensors(tiny_files["tq2_0"])
    grown = linear_tensors(synthesize(deeper, "tq2_0", cache=tmp_path))
    assert len(grown) == len(shared) * 3 // 2
    for name, (_, data) in shared.items():
        assert np.array_equal(grown[name][1], data), name


@pytest.mark.parametrize("fmt", ["tq1_0", "tq2_0"])
def test_ternary_formats_dequantize_exactly_to_f16(tiny_files: dict[str, Path], fmt: str) -> None:
    reference = linear_tensors(tiny_files["f16"])
    ternary = linear_tensors(tiny_files[fmt])
    assert set(ternary) == set(reference) and len(ternary) == 7 * TINY.layers
    for name, (qtype, data) in ternary.items():
        assert qtype.name.lower() == fmt
        f16_type, f16_data = reference[name]
        assert f16_type == GGMLQuantizationType.F16
        weights = dequantize(data, qtype)
        np.testing.assert_array_equal(weights, f16_data.astype(np.float32), err_msg=name)
        scale = np.float32(linear_scale(weights.shape[1]))
        values, counts = np.unique(weights, return_counts=True)
        assert set(values.tolist()) == {-scale, 0.0, scale}, name
        assert counts.min() / counts.sum() > 0.3  # roughly a third each


def test_linear_scale_is_a_power_of_two_near_inverse_sqrt_fan_in() -> None:
    for fan_in in (256, 512, 768, 3072, 8704):
        scale = linear_scale(fan_in)
        assert np.float16(scale) == scale
        assert np.log2(scale) == round(np.log2(scale))
        assert 0.7 < scale * fan_in**0.5 < 1.42


def test_other_formats_keep_embeddings_and_norms(tiny_files: dict[str, Path]) -> None:
    for fmt, path in tiny_files.items():
        tensors = {t.name: t for t in GGUFReader(path).tensors}
        assert tensors["token_embd.weight"].tensor_type == GGMLQuantizationType.F16
        assert tensors["output.weight"].tensor_type == GGMLQuantizationType.F16
        assert tensors["blk.0.attn_norm.weight"].tensor_type == GGMLQuantizationType.F32
        assert tensors["blk.1.ffn_up.weight"].tensor_type.name.lower() == fmt
        embd = np.array(tensors["token_embd.weight"].data, dtype=np.float32)
        assert 0.015 < embd.std() < 0.025


def test_metadata_has_what_llama_cpp_needs(tiny_files: dict[str, Path]) -> None:
    reader = GGUFReader(tiny_files["tq2_0"])

    def value(key: str):
        return reader.get_field(key).contents()

    assert value("general.architecture") == "llama"
    assert value("general.name") == "tiny"
    assert value("general.file_type") == 37  # LLAMA_FTYPE_MOSTLY_TQ2_0
    assert value("llama.context_length") == TINY.n_ctx
    assert value("llama.embedding_length") == TINY.hidden
    assert value("llama.block_count") == TINY.layers
    assert value("llama.feed_forward_length") == TINY.ffn
    assert value("llama.attention.head_count") == TINY.heads
    assert value("llama.attention.head_count_kv") == TINY.kv_heads
    assert value("llama.rope.dimension_count") == TINY.head_dim
    assert value("tokenizer.ggml.model") == "llama"
    tokens = value("tokenizer.ggml.tokens")
    assert len(tokens) == len(set(tokens)) == TINY.vocab
    assert tokens[:4] == ["<unk>", "<s>", "</s>", "<0x00>"] and tokens[258] == "<0xFF>"
    assert ModelSpec.from_dict(json.loads(value("tritbench.spec"))) == TINY


def test_vocab_fills_any_size() -> None:
    tokens, scores, types = vocab_tokens(32000)
    assert len(tokens) == len(set(tokens)) == len(scores) == len(types) == 32000


def test_bitnet_ties_output_and_adds_sub_norms(tmp_path: Path) -> None:
    spec = get_preset("tiny-bitnet")
    reader = GGUFReader(synthesize(spec, "tq2_0", cache=tmp_path))
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names
    assert {"blk.0.attn_sub_norm.weight", "blk.0.ffn_sub_norm.weight"} <= names
    assert sum(int(t.n_elements) for t in reader.tensors) == spec.n_params()
    assert reader.get_field("general.architecture").contents() == "bitnet"


def test_embedding_types_are_honoured(tmp_path: Path) -> None:
    spec = dataclasses.replace(TINY, name="tiny-q8e", embd_type="q8_0", output_type="f32")
    tensors = {t.name: t for t in GGUFReader(synthesize(spec, "tq1_0", cache=tmp_path)).tensors}
    assert tensors["token_embd.weight"].tensor_type == GGMLQuantizationType.Q8_0
    assert tensors["output.weight"].tensor_type == GGMLQuantizationType.F32


def test_an_interrupted_write_leaves_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = synth.make_tensor
    calls = []

    def interrupt_midway(spec, plan):
        calls.append(plan.name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(spec, plan)

    monkeypatch.setattr(synth, "make_tensor", interrupt_midway)
    with pytest.raises(KeyboardInterrupt):
        synthesize_many(TINY, ["f16", "tq2_0"], cache=tmp_path)
    folder = model_path(TINY, "f16", tmp_path).parent
    assert list(folder.iterdir()) == []  # neither final files nor temp files
    monkeypatch.setattr(synth, "make_tensor", real)
    assert synthesize(TINY, "f16", cache=tmp_path).is_file()
