"""ModelSpec validation, hashing and the presets."""

from __future__ import annotations

import dataclasses

import pytest

from tritbench.models import PRESETS, ModelError, ModelSpec, get_preset
from tritbench.models.presets import NOMINAL_PARAMS

TINY = ModelSpec("t", "llama", 256, 2, 512, 4, 2, 1024, n_ctx=256, seed=7)


def test_presets_are_the_promised_sizes() -> None:
    assert {"tiny", "tiny-bitnet", "small", "medium", "1b", "3b"} <= set(PRESETS)
    for name, spec in PRESETS.items():
        assert spec.name == name
        assert abs(spec.n_params() / NOMINAL_PARAMS[name] - 1) <= 0.10, name


def test_linear_layers_by_hand() -> None:
    tiny = get_preset("tiny")  # hidden 256, ffn 512, 4 heads, 2 KV heads: head_dim 64, kv_dim 128
    assert {k: (v.in_features, v.out_features) for k, v in tiny.linear_layers().items()} == {
        "attn_q": (256, 256), "attn_k": (256, 128), "attn_v": (256, 128), "attn_output": (256, 256),
        "ffn_gate": (256, 512), "ffn_up": (256, 512), "ffn_down": (512, 256)}
    assert tiny.linear_layers()["attn_k"].rows_cols == (128, 256)  # as the GGUF file stores it


def test_preset_arches_and_dims() -> None:
    assert get_preset("tiny-bitnet").arch == "bitnet"
    assert all(spec.arch == "llama" for name, spec in PRESETS.items() if name != "tiny-bitnet")
    for spec in PRESETS.values():
        for in_features, out_features in spec.linear_layers().values():
            assert out_features % 256 == 0 or out_features == spec.kv_dim
            assert in_features % 256 == 0
    big = get_preset("3b")
    assert (big.hidden, big.ffn, big.layers, big.heads) == (3072, 8704, 26, 32)  # BitNet b1.58 3B, rounded


def test_n_params_counts_every_tensor() -> None:
    h, f, kv, v, n = 256, 512, 128, 1024, 2
    linear = n * (2 * h * h + 2 * kv * h + 3 * h * f)
    assert TINY.n_linear_params() == linear
    assert TINY.n_params() == 2 * v * h + n * 2 * h + h + linear
    bitnet = dataclasses.replace(TINY, arch="bitnet")
    assert bitnet.n_params() == v * h + n * (3 * h + f) + h + linear  # tied output, two sub-norms


def test_get_preset_is_case_insensitive_and_rejects_unknown_names() -> None:
    assert get_preset(" Tiny ") is PRESETS["tiny"]
    with pytest.raises(ModelError, match=r"unknown model preset 'hugee' \(known: tiny, tiny-bitnet, small"):
        get_preset("hugee")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"arch": "gpt2"}, "unknown arch 'gpt2'"),
        ({"hidden": 300}, r"hidden \(300\) must be a multiple of 256"),
        ({"ffn": 500}, r"ffn \(500\) must be a multiple of 256"),
        ({"layers": 0}, r"layers \(0\) must be a positive integer"),
        ({"vocab": -5}, r"vocab \(-5\) must be a positive integer"),
        ({"n_ctx": 1.5}, r"n_ctx \(1.5\) must be a positive integer"),
        ({"heads": 3}, r"hidden \(256\) must be divisible by heads \(3\)"),
        ({"kv_heads": 3}, r"heads \(4\) must be divisible by kv_heads \(3\)"),
        ({"heads": 256, "kv_heads": 1}, r"head_dim \(1\) must be even"),
        ({"vocab": 100}, r"vocab \(100\) must be at least"),
        ({"embd_type": "q4_0"}, "embd_type 'q4_0' not supported"),
        ({"output_type": "bf16"}, "output_type 'bf16' not supported"),
        ({"seed": -1}, "seed"),
        ({"name": "../x"}, "name '../x'"),
        ({"norm_eps": 0.0}, "norm_eps"),
    ],
)
def test_invalid_specs_raise_model_error(changes: dict, fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment) as err:
        dataclasses.replace(TINY, **changes)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("invalid model spec")


def test_spec_hash_is_stable() -> None:
    assert TINY.spec_hash() == dataclasses.replace(TINY).spec_hash()
    assert len(TINY.spec_hash()) == 12
    # Pinned: a change here means cached files would silently be reused for different bytes.
    assert get_preset("tiny").spec_hash() == "ff72c5607a07"


# One valid change per field; each must move the hash.
HASH_CHANGES = [
    {"name": "u"},
    {"arch": "bitnet"},
    {"hidden": 512},
    {"layers": 3},
    {"ffn": 768},
    {"heads": 8},
    {"kv_heads": 4},
    {"vocab": 1025},
    {"n_ctx": 512},
    {"seed": 8},
    {"embd_type": "q8_0"},
    {"output_type": "f32"},
    {"norm_eps": 1e-6},
]


@pytest.mark.parametrize("changes", HASH_CHANGES)
def test_spec_hash_changes_with_every_field(changes: dict) -> None:
    assert dataclasses.replace(TINY, **changes).spec_hash() != TINY.spec_hash()


def test_hash_test_covers_every_field() -> None:
    changed = {key for changes in HASH_CHANGES for key in changes}
    assert changed == {f.name for f in dataclasses.fields(ModelSpec)}


def test_dict_round_trip() -> None:
    assert ModelSpec.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ModelError, match="unknown fields colour"):
        ModelSpec.from_dict({**TINY.to_dict(), "colour": 1})
    with pytest.raises(ModelError, match="invalid model spec"):
        ModelSpec.from_dict({"name": "x"})
