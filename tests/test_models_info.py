"""read_model_info on good files, and one-line ModelErrors for every kind of bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import quantize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tritbench.models.gguf_info as gguf_info
from tritbench.models import FORMATS, GGUFModelInfo, ModelError, get_preset, read_model_info, synthesize_many
from tritbench.models.gguf_layout import read_layout

TINY = get_preset("tiny")
BITS_PER_WEIGHT = {"f16": 16.0, "q8_0": 8.5, "q4_0": 4.5, "tq1_0": 1.6875, "tq2_0": 2.0625}


@pytest.fixture(autouse=True, scope="module")
def _tritbench_home(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITBENCH_HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synthesize_many(TINY, FORMATS, cache=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def bitnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_many(get_preset("tiny-bitnet"), ["tq1_0"], cache=tmp_path_factory.mktemp("b"))["tq1_0"]


def write_gguf(path: Path, tensors: dict[str, tuple[np.ndarray, GGMLQuantizationType]], **strings: str) -> Path:
    """A hand-made GGUF (arch llama) holding tensors and extra string metadata."""
    writer = GGUFWriter(path, "llama")
    for key, value in strings.items():
        writer.add_string(key.replace("__", "."), value)
    for name, (values, qtype) in tensors.items():
        writer.add_tensor(name, quantize(values, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def expect_error(path: Path, fragment: str) -> str:
    with pytest.raises(ModelError) as err:
        read_model_info(path)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("fmt", FORMATS)
def test_info_of_each_format(tiny_files: dict[str, Path], fmt: str) -> None:
    info = read_model_info(tiny_files[fmt])
    assert isinstance(info, GGUFModelInfo)
    assert info.path == str(tiny_files[fmt].absolute())
    assert (info.name, info.architecture, info.format) == ("tiny", "llama", fmt)
    assert info.bits_per_weight == BITS_PER_WEIGHT[fmt]
    assert info.n_params == TINY.n_params()
    assert info.n_linear_params == TINY.n_linear_params()
    assert (info.embd_type, info.output_type) == ("f16", "f16")
    expected_types = {"f16": 2, "f32": 5}
    expected_types[fmt] = expected_types.get(fmt, 0) + 14  # 7 linears x 2 layers
    assert info.tensor_types == expected_types
    assert info.file_bytes == tiny_files[fmt].stat().st_size
    assert (info.n_vocab, info.n_ctx_train) == (TINY.vocab, TINY.n_ctx)
    assert info.spec == TINY.to_dict()
    assert json.loads(json.dumps(info.to_dict())) == info.to_dict()


def test_info_of_a_bitnet_file(bitnet_file: Path) -> None:
    info = read_model_info(bitnet_file)
    assert (info.architecture, info.format, info.output_type) == ("bitnet", "tq1_0", None)
    assert info.n_params == get_preset("tiny-bitnet").n_params()


def test_the_layout_walk_agrees_with_gguf_reader(tiny_files: dict[str, Path], bitnet_file: Path) -> None:
    for path in [*tiny_files.values(), bitnet_file]:
        reader = GGUFReader(path)
        layout = read_layout(path)
        assert layout.data_offset == reader.data_offset
        assert [(t.name, t.ggml_type, t.n_elements, t.nbytes, t.start) for t in layout.tensors] == [
            (t.name, t.tensor_type, int(t.n_elements), int(t.n_bytes), int(t.data_offset)) for t in reader.tensors
        ]
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key not in layout.metadata:
                continue
            value = layout.metadata[key]
            if hasattr(value, "length"):
                assert value.length == len(field.data), key
            else:
                assert value == pytest.approx(field.contents()), key


def test_sha256_is_right_and_cached(tiny_files: dict[str, Path], monkeypatch, tmp_path: Path) -> None:
    path = tiny_files["q4_0"]
    cache_file = tmp_path / "hashes.json"
    first = read_model_info(path, hash_cache=cache_file)
    assert first.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.sha256 in json.loads(cache_file.read_text()).values()

    def no_rehash(_file: Path) -> str:
        raise AssertionError("hashed twice")

    monkeypatch.setattr(gguf_info, "_hash_file", no_rehash)
    assert read_model_info(path, hash_cache=cache_file).sha256 == first.sha256
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # a touched file is re-hashed
    with pytest.raises(AssertionError, match="hashed twice"):
        read_model_info(path, hash_cache=cache_file)


def test_default_hash_cache_lives_under_tritbench_home(tiny_files: dict[str, Path], monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRITBENCH_HOME", str(tmp_path))
    read_model_info(tiny_files["tq2_0"])
    assert (tmp_path / "models" / "sha256-cache.json").is_file()


def test_foreign_files_mixed_types_and_name_fallback(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((256, 256), dtype=np.float32)
    path = write_gguf(
        tmp_path / "foreign.gguf",
        {
            "blk.0.attn_q.weight": (weights, GGMLQuantizationType.F16),
            "blk.0.ffn_up.weight": (weights, GGMLQuantizationType.Q8_0),
            "blk.0.attn_norm.weight": (weights[0], GGMLQuantizationType.F32),
        },
    )
    info = read_model_info(path)
    assert (info.name, info.format, info.spec, info.n_vocab, info.embd_type) == ("foreign", "mixed", None, None, None)
    assert info.bits_per_weight == (16 + 8.5) / 2
    assert info.n_params == 2 * 256 * 256 + 256


def test_corrupt_spec_metadata(tmp_path: Path) -> None:
    ones = np.ones(256, dtype=np.float32)
    path = write_gguf(tmp_path / "bad-spec.gguf", {"x": (ones, GGMLQuantizationType.F32)}, tritbench__spec="{nope")
    expect_error(path, "corrupt GGUF metadata: tritbench.spec is not a JSON object")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    message = expect_error(tmp_path / "nope.gguf", "model file not found: ")
    assert message.endswith(str(tmp_path / "nope.gguf"))
    expect_error(tmp_path, "model path is a directory")


def test_empty_and_foreign_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty.gguf").write_bytes(b"")
    expect_error(tmp_path / "empty.gguf", "not a GGUF file (empty file)")
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04" + os.urandom(100))
    expect_error(tmp_path / "x.zip", r"not a GGUF file (bad magic b'PK\x03\x04'): ")
    (tmp_path / "gg").write_bytes(b"GG")
    expect_error(tmp_path / "gg", "truncated GGUF file: header ends at byte 24 but the file has 2 bytes")


def truncated(source: Path, cut: int, folder: Path) -> Path:
    path = folder / f"cut-{cut}.gguf"
    with open(source, "rb") as src:
        path.write_bytes(src.read(cut))
    return path


def test_truncated_at_chosen_points(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    source = tiny_files["tq1_0"]
    layout = read_layout(source)
    last = max(layout.tensors, key=lambda t: t.end)
    cases = {
        10: "truncated GGUF file: header ends at byte 24 but the file has 10 bytes",
        30: "truncated GGUF file: metadata",
        5000: "metadata key #",  # inside the token list
        layout.data_offset - 40: "truncated GGUF file: tensor info #",
        layout.data_offset + 10: "truncated GGUF file: tensor 'token_embd.weight' ends at byte",
        last.end - 1: f"tensor {last.name!r} ends at byte {last.end} but the file has {last.end - 1} bytes: ",
    }
    for cut, fragment in cases.items():
        expect_error(truncated(source, cut, tmp_path), fragment)


@pytest.fixture(scope="module")
def truncation_source(tiny_files: dict[str, Path]) -> tuple[bytes, int]:
    data = tiny_files["tq2_0"].read_bytes()
    return data, max(t.end for t in read_layout(tiny_files["tq2_0"]).tensors)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_truncated_anywhere_is_a_model_error(truncation_source, tmp_path: Path, fraction: float) -> None:
    data, data_end = truncation_source
    cut = int(fraction * data_end)  # anywhere before the last tensor's final byte
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelError) as err:
        read_model_info(path)
    assert "\n" not in str(err.value) and str(err.value).endswith(str(path))


def test_garbage_counts_fail_fast(tmp_path: Path) -> None:
    key = b"tokenizer.ggml.tokens"
    huge_array = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 2**60)
    (tmp_path / "a.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + huge_array)
    expect_error(tmp_path / "a.gguf", "truncated GGUF file: metadata key #0 'tokenizer.ggml.tokens' ends at byte")
    (tmp_path / "b.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**40, 0))
    expect_error(tmp_path / "b.gguf", "truncated GGUF file: tensor infos ends at byte")
    bad_type = struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99) + bytes(8)
    (tmp_path / "c.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + bad_type)
    expect_error(tmp_path / "c.gguf", "corrupt GGUF file: metadata key #0 'k': unknown value type 99")
    (tmp_path / "d.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 7, 0, 0))
    expect_error(tmp_path / "d.gguf", "unsupported GGUF version 7")


def test_missing_architecture(tmp_path: Path) -> None:
    (tmp_path / "noarch.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))
    expect_error(tmp_path / "noarch.gguf", "GGUF file has no general.architecture")


def test_info_is_a_frozen_record(tiny_files: dict[str, Path]) -> None:
    info = read_model_info(tiny_files["f16"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]


def test_arrays_nested_without_end_are_refused_not_recursed(tmp_path: Path) -> None:
    key = b"tokenizer.ggml.merges"
    depth = 100_000  # far beyond Python's recursion limit
    nested = struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQ", 4, 0)
    (tmp_path / "n.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
                                      + nested)
    expect_error(tmp_path / "n.gguf", "arrays nested more than 8 deep")
    shallow = struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 4, 2) + struct.pack("<II", 7, 8)  # [[7, 8]]
    (tmp_path / "s.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + struct.pack("<Q", len(key)) + key
                                      + shallow + struct.pack("<Q", 20) + b"general.architecture"
                                      + struct.pack("<IQ", 8, 5) + b"llama")
    assert read_model_info(tmp_path / "s.gguf", hash_cache=tmp_path / "h.json").architecture == "llama"


def test_a_tensor_larger_than_memory_is_refused_before_its_data_is_read(tmp_path: Path) -> None:
    path = tmp_path / "sparse.gguf"
    writer = GGUFWriter(path, "llama")
    shape = (1 << 20, 1 << 20)  # 4 TiB of f32, more than any machine this runs on
    writer.add_tensor_info("token_embd.weight", shape, np.dtype(np.float32), 4 << 40)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    os.truncate(path, path.stat().st_size + (4 << 40) + 64)  # sparse: no disk used, but hashing would take ages
    expect_error(path, "tensor 'token_embd.weight' claims 4096.0 GiB, more than this machine's memory")


# ---- fuzz: metadata as an attacker writes it --------------------------------------------------------------
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _value(draw, vtype: int, depth: int) -> bytes:
    if vtype in _SCALARS:
        size = struct.calcsize(_SCALARS[vtype])
        return draw(st.binary(min_size=size, max_size=size))
    if vtype == 8:  # string: any bytes, any claimed length (sometimes a lie)
        text = draw(st.binary(max_size=40))
        length = draw(st.one_of(st.just(len(text)), st.integers(0, 2**64 - 1)))
        return struct.pack("<Q", length) + text
    item = draw(st.sampled_from([*_SCALARS, 8, 9, 99])) if depth < 12 else 4
    count = draw(st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1)))
    items = b"".join(_value(draw, item, depth + 1) for _ in range(min(count, 3)))
    return struct.pack("<IQ", item, count) + items


@st.composite
def gguf_metadata(draw) -> bytes:
    n_kv = draw(st.integers(0, 6))
    claimed = draw(st.one_of(st.just(n_kv), st.integers(0, 2**64 - 1)))
    body = b""
    for _ in range(n_kv):
        key = draw(st.one_of(st.sampled_from([b"general.architecture", b"general.name", b"llama.context_length",
                                              b"tritbench.spec", b"tokenizer.ggml.tokens"]), st.binary(max_size=20)))
        vtype = draw(st.sampled_from([*_SCALARS, 8, 9, 99]))
        body += struct.pack("<Q", len(key)) + key + struct.pack("<I", vtype) + _value(draw, vtype, 0)
    n_tensors = draw(st.one_of(st.just(0), st.integers(0, 2**64 - 1)))
    return b"GGUF" + struct.pack("<IQQ", draw(st.sampled_from([2, 3, 4])), n_tensors, claimed) + body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=gguf_metadata())
def test_any_metadata_is_read_or_refused_in_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(data)
    try:
        info = read_model_info(path, hash_cache=tmp_path / "h.json")
    except ModelError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(info.architecture, str)


def test_the_digest_is_computed_only_where_it_is_needed(tiny_files: dict[str, Path], monkeypatch, tmp_path) -> None:
    hashed: list[Path] = []
    monkeypatch.setattr(gguf_info, "_hash_file", lambda f: hashed.append(f) or "0" * 64)
    info = read_model_info(tiny_files["tq2_0"], hash_cache=tmp_path / "h.json", digest=False)
    assert info.sha256 is None and hashed == []
    from tritbench.costmodel.adapters import read_gguf_arch
    from tritbench.models import resolve_model

    resolve_model(str(tiny_files["tq2_0"]), ["tq2_0"])
    read_gguf_arch(tiny_files["tq2_0"])
    assert hashed == []  # planning and the cost model read the shape only
    assert read_model_info(tiny_files["tq2_0"], hash_cache=tmp_path / "h.json").sha256 == "0" * 64
