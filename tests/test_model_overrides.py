"""Preset references with field overrides (`small@layers=21`): the parser, the derived spec, its cached
file, and the places a preset name is taken (run plans, suite files, `bench models synth|info`)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tritbench.models import (
    PRESETS,
    ModelError,
    ModelSpec,
    PresetRef,
    get_preset,
    parse_ref,
    preset_spec,
    resolve_model,
    synthesize,
)
from tritbench.models.gguf_info import read_model_info
from tritbench.models.gguf_layout import read_layout
from tritbench.models.overrides import SETTABLE
from tritbench.models.synth import model_path

TINY, SMALL = get_preset("tiny"), get_preset("small")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
INT_FIELDS = [f for f, choices in SETTABLE.items() if choices is None]


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TRITBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# ---- the parser ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "preset", "overrides"),
    [
        ("small", "small", ()),
        ("small@layers=21", "small", (("layers", 21),)),
        (" Tiny @ VOCAB = 2048 @layers=04", "tiny", (("layers", 4), ("vocab", 2048))),
        ("small@ffn=4096@hidden=1024", "small", (("hidden", 1024), ("ffn", 4096))),
        ("tiny@n_ctx=128@kv_heads=4@arch=BitNet", "tiny", (("arch", "bitnet"), ("kv_heads", 4), ("n_ctx", 128))),
        ("tiny@output_type=Q8_0@seed=7@embd_type=f32", "tiny",
         (("seed", 7), ("embd_type", "f32"), ("output_type", "q8_0"))),
        ("hugee@layers=3", "hugee", (("layers", 3),)),  # the parser does not know the presets
    ],
)
def test_parse(text: str, preset: str, overrides: tuple) -> None:
    ref = parse_ref(text)
    assert ref == PresetRef(preset, overrides)
    assert parse_ref(str(ref)) == ref


def test_canonical_form_is_field_order_and_plain_values() -> None:
    assert str(parse_ref("TINY@vocab=02048@Layers=4")) == "tiny@layers=4@vocab=2048"
    assert str(parse_ref("small")) == "small"
    assert parse_ref("tiny@vocab=2048@layers=4") == parse_ref("tiny@layers=4@vocab=2048")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("@layers=3", "no preset name before '@'"),
        ("small@", "override '' is not FIELD=VALUE"),
        ("small@@layers=3", "override '' is not FIELD=VALUE"),
        ("small@layers", "override 'layers' is not FIELD=VALUE"),
        ("small@=3", "override '=3' is not FIELD=VALUE"),
        ("small@layers=", "layers has no value"),
        ("small@layers= ", "layers has no value"),
        ("small@layers=3@LAYERS=4", "layers is set twice"),
        ("small@layers=3@layers=3", "layers is set twice"),
        ("small@layers=abc", "layers takes a decimal integer, got 'abc'"),
        ("small@layers=2.5", "layers takes a decimal integer, got '2.5'"),
        ("small@layers=0x10", "layers takes a decimal integer, got '0x10'"),
        ("small@vocab=1e4", "vocab takes a decimal integer, got '1e4'"),
        ("small@layers=1_000", "layers takes a decimal integer, got '1_000'"),
        ("small@layers=+3", "layers takes a decimal integer, got '+3'"),
        ("small@layers=\u0663", "layers takes a decimal integer"),  # an Arabic-Indic digit: int() would take it
        ("small@seed=" + "9" * 20, "seed 99999999999999999999 has more than 19 digits"),
        ("small@arch=gpt2", "arch 'gpt2' not supported (known: llama, bitnet)"),
        ("small@embd_type=q4_0", "embd_type 'q4_0' not supported (known: f16, f32, q8_0)"),
        ("small@name=big", "the name cannot be set"),
        ("small@norm_eps=1e-6", "unknown field 'norm_eps' (known: arch, hidden, layers, ffn, heads, kv_heads, "
                                "vocab, n_ctx, seed, embd_type, output_type)"),
        ("small@depth=3", "unknown field 'depth'"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(ModelError) as err:
        parse_ref(text)
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"model reference {text!r}: ") and "\n" not in str(err.value)


def test_a_reference_that_is_not_text() -> None:
    with pytest.raises(ModelError, match="model reference must be text, got int"):
        parse_ref(21)  # type: ignore[arg-type]


def test_settable_fields_are_modelspecs_but_name_and_norm_eps() -> None:
    fields = [f.name for f in dataclasses.fields(ModelSpec)]
    assert set(fields) - set(SETTABLE) == {"name", "norm_eps"}
    assert list(SETTABLE) == [f for f in fields if f in SETTABLE]  # the canonical order is ModelSpec's


@st.composite
def references(draw) -> tuple[str, PresetRef]:
    """A reference in any field order, case and spacing, with the PresetRef it must parse to."""
    fields = draw(st.lists(st.sampled_from(list(SETTABLE)), unique=True, max_size=len(SETTABLE)))
    values = {f: draw(st.integers(-(10**18), 10**18) if SETTABLE[f] is None else st.sampled_from(SETTABLE[f]))
              for f in fields}
    preset = draw(st.sampled_from(list(PRESETS)))
    space = st.sampled_from(["", " ", "\t"])

    def cased(text: str) -> str:
        return "".join(c.upper() if draw(st.booleans()) else c for c in text)

    def written(field: str, value: int | str) -> str:
        shown = f"{value:0{draw(st.integers(0, 5))}d}" if isinstance(value, int) else cased(value)
        return f"{draw(space)}{cased(field)}{draw(space)}={draw(space)}{shown}{draw(space)}"

    parts = [written(f, values[f]) for f in draw(st.permutations(fields))]
    text = "@".join([draw(space) + cased(preset) + draw(space), *parts])
    order = list(SETTABLE)
    return text, PresetRef(preset, tuple(sorted(values.items(), key=lambda kv: order.index(kv[0]))))


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # `home`: unused here
@given(references())
def test_any_spelling_parses_to_its_canonical_form_and_back(case: tuple[str, PresetRef]) -> None:
    text, expected = case
    ref = parse_ref(text)
    assert ref == expected
    canonical = str(ref)
    assert parse_ref(canonical) == ref and str(parse_ref(canonical)) == canonical


_PIECES = st.sampled_from(["@", "=", " ", "tiny", "small", "layers", "hidden", "ffn", "heads", "kv_heads", "vocab",
                           "name", "arch", "embd_type", "llama", "q8_0", "0", "1", "256", "-", "\u0663", "/", "\n",
                           "\x00", "9" * 25])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=40), st.lists(st.one_of(_PIECES, st.text(max_size=3)), max_size=12).map("".join)))
def test_garbage_is_a_one_line_model_error_or_a_valid_spec(text: str) -> None:
    try:
        ref = parse_ref(text)
    except ModelError as exc:
        assert "\n" not in str(exc)
        return
    assert parse_ref(str(ref)) == ref
    try:
        spec = preset_spec(text)
    except ModelError as exc:
        assert "\n" not in str(exc)
        return
    assert NAME_RE.match(spec.name) and spec == preset_spec(str(ref))


# ---- the derived spec ---------------------------------------------------------------------------------------

def test_the_derived_spec_has_the_fields_and_a_name_saying_what_changed() -> None:
    spec = preset_spec("small@layers=21")
    assert spec == dataclasses.replace(SMALL, name="small_layers-21", layers=21)
    assert spec.n_params() - SMALL.n_params() == 8 * (SMALL.n_params() - preset_spec("small@layers=12").n_params())
    many = preset_spec("small@hidden=1024@ffn=4096@heads=16@kv_heads=4@n_ctx=4096")
    assert (many.name, many.hidden, many.ffn, many.heads, many.kv_heads, many.n_ctx) == (
        "small_hidden-1024_ffn-4096_heads-16_kv-4_ctx-4096", 1024, 4096, 16, 4, 4096)
    assert preset_spec("tiny@arch=bitnet").name == "tiny_arch-bitnet" and preset_spec("tiny@arch=bitnet").tied_output
    assert all(NAME_RE.match(preset_spec(r).name) for r in ("tiny@seed=0", "tiny@embd_type=q8_0", "1b@layers=2"))


def test_field_order_does_not_matter() -> None:
    a, b = preset_spec("tiny@layers=4@vocab=2048"), preset_spec("TINY@vocab=2048@layers=4")
    assert a == b and a.name == "tiny_layers-4_vocab-2048" and a.spec_hash() == b.spec_hash()
    assert model_path(a, "tq2_0") == model_path(b, "tq2_0")


def test_an_override_equal_to_the_preset_is_the_preset() -> None:
    assert preset_spec("small@layers=13") is SMALL
    assert preset_spec("small@hidden=768@seed=1234@embd_type=f16@arch=llama") is SMALL
    assert preset_spec("small@layers=13@vocab=1024").name == "small_vocab-1024"
    assert preset_spec(" Small ") is SMALL


def test_a_changed_field_changes_the_hash_and_the_file() -> None:
    paths = {model_path(preset_spec(r), "tq2_0") for r in ("tiny", "tiny@layers=3", "tiny@layers=4", "tiny@seed=1")}
    assert len(paths) == 4
    assert len({preset_spec(r).spec_hash() for r in ("tiny", "tiny@layers=3", "tiny@seed=1")}) == 3


def test_overrides_compose_with_the_type_flags() -> None:
    assert preset_spec("tiny", embd_type="q8_0").name == "tiny_embd-q8_0"  # the flags' names are unchanged
    assert preset_spec("tiny@embd_type=q8_0") == preset_spec("tiny", embd_type="q8_0")  # one spec, one file
    spec = preset_spec("tiny@layers=3", embd_type="q8_0", output_type="f32")
    assert spec.name == "tiny_layers-3_embd-q8_0_output-f32" and (spec.layers, spec.embd_type) == (3, "q8_0")
    # The reference names one model; a flag applies to every preset of the run: the reference wins.
    assert preset_spec("tiny@embd_type=f32", embd_type="q8_0").embd_type == "f32"
    assert preset_spec("tiny@layers=3", embd_type="f16") == preset_spec("tiny@layers=3")
    (variant,) = resolve_model("tiny@layers=3", ["tq2_0"], embd_type="q8_0")
    assert variant.name == "tiny_layers-3_embd-q8_0" and variant.spec.embd_type == "q8_0"
    with pytest.raises(ModelError, match=r"embd_type 'q4_0' not supported \(known: f16, f32, q8_0\)"):
        preset_spec("tiny@layers=3", embd_type="q4_0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("small@hidden=1000",
         "invalid model spec 'small_hidden-1000': hidden (1000) must be a multiple of 256 (ternary block size)"),
        ("tiny@heads=3", "invalid model spec 'tiny_heads-3': hidden (256) must be divisible by heads (3)"),
        ("small@hidden=1024@ffn=4096",  # small has 12 heads
         "invalid model spec 'small_hidden-1024_ffn-4096': hidden (1024) must be divisible by heads (12)"),
        ("tiny@kv_heads=3", "invalid model spec 'tiny_kv-3': heads (4) must be divisible by kv_heads (3)"),
        ("tiny@layers=0", "invalid model spec 'tiny_layers-0': layers (0) must be a positive integer"),
        ("tiny@vocab=100", "invalid model spec 'tiny_vocab-100': vocab (100) must be at least 264"),
        ("tiny@seed=-1", "invalid model spec 'tiny_seed--1': seed (-1) must be a non-negative integer"),
        ("tiny@n_ctx=4294967296", "invalid model spec 'tiny_ctx-4294967296': n_ctx (4294967296) must be at most "
                                  "4294967295 (GGUF stores it as a uint32)"),
        ("hugee@layers=3", "unknown model preset 'hugee' (known: tiny, tiny-bitnet, small"),
    ],
)
def test_a_bad_shape_gets_modelspecs_message(text: str, message: str) -> None:
    with pytest.raises(ModelError) as err:
        preset_spec(text)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# ---- resolution and the cache -------------------------------------------------------------------------------

def test_resolve_gives_a_variant_per_format_without_writing(home: Path) -> None:
    variants = resolve_model("tiny@layers=3", ["tq2_0", "f16"])
    spec = preset_spec("tiny@layers=3")
    assert [(v.name, v.format, v.spec) for v in variants] == [("tiny_layers-3", "tq2_0", spec),
                                                             ("tiny_layers-3", "f16", spec)]
    assert variants[0].path == model_path(spec, "tq2_0", home / "models") and not home.exists()


def test_resolve_errors_for_references() -> None:
    with pytest.raises(ModelError, match=r"unknown model preset 'hugee' \(known: tiny,"):
        resolve_model("hugee@layers=3", ["tq2_0"])
    with pytest.raises(ModelError, match=r"model reference 'tiny@layer=3': unknown field 'layer' \(known: arch,"):
        resolve_model("tiny@layer=3", ["tq2_0"])
    with pytest.raises(ModelError, match=r"unknown model 'hugee': not a preset"):
        resolve_model("hugee", ["tq2_0"])  # no '@': the old message


def test_a_file_whose_name_has_an_at_sign_is_still_a_file(tmp_path: Path) -> None:
    source = synthesize(TINY, "tq1_0", cache=tmp_path / "c")
    for name in ("tiny@layers=3.gguf", "model@v2.gguf"):
        mine = tmp_path / name
        mine.write_bytes(source.read_bytes())
        (variant,) = resolve_model(str(mine), ["f16"])
        assert (variant.path, variant.format, variant.spec) == (mine, "tq1_0", None)


def test_synthesized_once_per_spec_and_read_back(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (first,) = resolve_model("tiny@layers=3@kv_heads=4", ["tq2_0"], cache=cache)
    (permuted,) = resolve_model("tiny@KV_HEADS=4@layers=3", ["tq2_0"], cache=cache)
    path = first.ensure()
    assert permuted.path == path and permuted.exists()
    mtime = path.stat().st_mtime_ns
    assert permuted.ensure() == path and path.stat().st_mtime_ns == mtime  # reused, not written again
    assert [p.name for p in cache.iterdir()] == [path.parent.name]
    layout = read_layout(path)
    assert layout.metadata["llama.block_count"] == 3 and layout.metadata["llama.attention.head_count_kv"] == 4
    assert {t.name.split(".")[1] for t in layout.tensors if t.name.startswith("blk.")} == {"0", "1", "2"}
    info = read_model_info(path, digest=False)
    assert (info.name, info.format, info.spec["layers"], info.spec["kv_heads"]) == ("tiny_layers-3_kv-4", "tq2_0", 3, 4)
    (other,) = resolve_model("tiny@layers=4@kv_heads=4", ["tq2_0"], cache=cache)
    assert other.path != path and other.path.parent != path.parent


# ---- where a preset name is taken ---------------------------------------------------------------------------

def test_run_plans_and_suite_files_take_references(tmp_path: Path) -> None:
    from tritbench.plan.cases import build_plan
    from tritbench.plan.suite import load_suite, make_config

    suite = tmp_path / "suite.toml"
    suite.write_text('models = ["tiny@layers=4", "tiny"]\nformats = ["tq2_0"]\n')
    plan = build_plan(make_config(load_suite(suite), {}), default_threads=1)
    assert [(v.model.name, v.model.spec.layers) for v in plan] == [("tiny_layers-4", 4), ("tiny", 2)]
    plan = build_plan(make_config({}, {"models": ["small@layers=21"], "formats": ["tq1_0"]}), default_threads=1)
    assert [(v.model.name, v.model.spec.layers) for v in plan] == [("small_layers-21", 21)]
    with pytest.raises(ModelError, match="layers takes a decimal integer"):
        build_plan(make_config({}, {"models": ["small@layers=x"], "formats": ["tq1_0"]}), default_threads=1)


def bench(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`bench ARGV` in this process through tritbench.cli.main, as the console script runs it."""
    import tritbench.cli as cli

    monkeypatch.setattr("sys.argv", ["bench", *argv])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_models_synth_and_info_take_references(home: Path, monkeypatch, capsys) -> None:
    code, out, err = bench(["models", "synth", "tiny@layers=3", "-f", "tq2_0"], monkeypatch, capsys)
    assert code == 0, err
    name, fmt, path = out.split()
    assert (name, fmt) == ("tiny_layers-3", "tq2_0") and Path(path).is_relative_to(home)
    code, out, err = bench(["models", "info", "TINY@layers=3", "-f", "tq2_0", "--json"], monkeypatch, capsys)
    assert code == 0, err
    info = json.loads(out)
    assert (info["path"], info["name"], info["spec"]["layers"]) == (path, "tiny_layers-3", 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "synth", "tiny@layers=abc", "-f", "tq2_0"],
         "model reference 'tiny@layers=abc': layers takes a decimal integer, got 'abc'"),
        (["models", "synth", "tiny@layers=3@layers=4"],
         "model reference 'tiny@layers=3@layers=4': layers is set twice"),
        (["models", "synth", "hugee@layers=3"], "unknown model preset 'hugee' (known: tiny,"),
        (["models", "synth", "tiny.gguf"], "unknown model preset 'tiny.gguf' (known: tiny,"),
        (["models", "info", "tiny@hidden=300"],
         "invalid model spec 'tiny_hidden-300': hidden (300) must be a multiple"),
        (["models", "info", "tiny@colour=red"],
         "model reference 'tiny@colour=red': unknown field 'colour' (known: arch,"),
        (["run", "-m", "tiny@layers=", "-f", "tq2_0"], "model reference 'tiny@layers=': layers has no value"),
    ],
)
def test_bad_references_are_one_line_and_exit_2(argv, message, home: Path, monkeypatch, capsys) -> None:
    code, out, err = bench(argv, monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"bench: error: {message}") and err.count("\n") == 1, err
    assert not home.exists()  # nothing synthesized or written


def test_models_list_help_names_the_syntax_and_every_field() -> None:
    from tritbench.cli.models import app

    res = CliRunner().invoke(app, ["list", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "PRESET@FIELD=VALUE" in res.stdout and "small@layers=21" in res.stdout
    assert all(field in res.stdout for field in SETTABLE)
