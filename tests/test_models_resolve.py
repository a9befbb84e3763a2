"""resolve_model and ModelVariant: preset names and GGUF paths into files to benchmark."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tritbench.models import ModelError, ModelVariant, get_preset, resolve_model, synthesize
from tritbench.models.synth import model_path

TINY = get_preset("tiny")


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TRITBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_preset_gives_one_variant_per_format_without_writing(home: Path) -> None:
    variants = resolve_model("tiny", ["tq2_0", "F16", "tq2_0"])
    assert [(v.name, v.format, v.spec) for v in variants] == [("tiny", "tq2_0", TINY), ("tiny", "f16", TINY)]
    assert variants[0].path == model_path(TINY, "tq2_0", home / "models")
    assert not any(v.exists() for v in variants)
    assert not home.exists()  # resolving is cheap: nothing synthesized yet


def test_ensure_synthesizes_a_preset_once(home: Path) -> None:
    (variant,) = resolve_model("TINY", ["q8_0"])
    path = variant.ensure()
    assert path == variant.path and variant.exists()
    mtime = path.stat().st_mtime_ns
    assert variant.ensure() == path and path.stat().st_mtime_ns == mtime


def test_ensure_honours_an_explicit_cache(tmp_path: Path, home: Path) -> None:
    (variant,) = resolve_model("tiny", ["tq1_0"], cache=tmp_path / "elsewhere")
    assert variant.ensure() == model_path(TINY, "tq1_0", tmp_path / "elsewhere")
    assert not home.exists()


def test_bad_formats_for_a_preset() -> None:
    with pytest.raises(ModelError, match=r"unknown format 'q5' \(known: f16, q8_0, q4_0, tq1_0, tq2_0; made by"):
        resolve_model("tiny", ["tq2_0", "q5"])
    with pytest.raises(ModelError, match="no formats given for model preset 'tiny'"):
        resolve_model("tiny", [])
    assert [v.format for v in resolve_model("tiny", "tq1_0")] == ["tq1_0"]  # type: ignore[arg-type]


def test_a_file_gives_one_variant_with_its_own_format(tmp_path: Path) -> None:
    source = synthesize(TINY, "tq1_0", cache=tmp_path / "c")
    mine = tmp_path / "mine.gguf"
    shutil.copy(source, mine)
    (variant,) = resolve_model(str(mine), ["f16", "q4_0"])  # formats are ignored for a file
    assert variant == ModelVariant("tiny", "tq1_0", mine, None)
    assert variant.ensure() == mine
    mine.unlink()
    with pytest.raises(ModelError, match=f"model file not found: {mine}"):
        variant.ensure()


def test_a_relative_file_name_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(synthesize(TINY, "q4_0", cache=tmp_path / "c"), tmp_path / "model-file")
    monkeypatch.chdir(tmp_path)
    (variant,) = resolve_model("model-file", [])
    assert (variant.path, variant.format) == (tmp_path / "model-file", "q4_0")


def test_unknown_references(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown model 'hugee': not a preset \(tiny, tiny-bitnet, .*\) and no such"):
        resolve_model("hugee", ["tq2_0"])
    with pytest.raises(ModelError, match="model file not found: .*nope.gguf"):
        resolve_model("nope.gguf", ["tq2_0"])
    (tmp_path / "junk.gguf").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve_model(str(tmp_path / "junk.gguf"), [])


def test_variants_are_hashable_records() -> None:
    (variant,) = resolve_model("tiny-bitnet", ["tq2_0"])
    assert {variant: 1}[variant] == 1
    record = variant.to_dict()
    assert record["spec"]["arch"] == "bitnet" and record["path"].endswith("tiny-bitnet-tq2_0.gguf")
