"""The C read-bandwidth probe (bench/csrc/stream_read.c): the value it returns proves it read every byte,
whatever the stream count and tail; read_bandwidth names what ran, and falls back to numpy without it.
No speed is asserted: the machine is shared."""

import numpy as np
import pytest

from tritbench.measure import bandwidth


@pytest.fixture
def lib():
    lib = bandwidth.stream_library()
    if isinstance(lib, str):
        pytest.fail(f"{lib} (make -C bench/csrc, or make test)")
    return lib


def expected_xor(data: np.ndarray) -> int:
    """XOR of the bytes as native uint64 words, the last partial word zero-padded (the probe's contract)."""
    padded = np.zeros(-(-data.nbytes // 8) * 8, np.uint8)
    padded[: data.nbytes] = data
    return int(np.bitwise_xor.reduce(padded.view(np.uint64), initial=np.uint64(0)))


# Lengths: whole regions, a tail of whole words, a partial last word, shorter than one line per stream, empty.
@pytest.mark.parametrize("n", [64 * 8 * 5, 64 * 8 * 5 + 8 * 7, 64 * 37 + 13, 100, 7, 0])
@pytest.mark.parametrize("streams", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("portable", [False, True])
def test_stream_read_is_the_xor_of_every_byte(lib, n, streams, portable):
    rng = np.random.default_rng(n * 31 + streams)
    raw = rng.integers(0, 256, n + 3, dtype=np.uint8)
    for data in (raw[:n], raw[3:]):  # aligned and misaligned starts
        assert bandwidth.stream_xor(data, streams, portable=portable) == expected_xor(data)


def test_stream_read_tail_after_the_regions(lib):
    # 4 streams, 2 lines each, then a 100-byte tail: a byte in the tail's partial word still counts.
    data = np.zeros(4 * 64 * 2 + 100, np.uint8)
    data[4 * 64 * 2 + 97] = 0xAB  # word 12 of the tail, byte 1 of its 4-byte partial word
    assert bandwidth.stream_xor(data, 4) == (0xAB << (8 * 1) if np.little_endian else 0xAB << (8 * 6))
    data[0] = 0xAB  # the same bit pattern in the first word cancels it
    assert bandwidth.stream_xor(data, 4) == expected_xor(data)


def test_stream_read_of_ones_is_zero_for_an_even_word_count(lib):
    ones = np.ones(1 << 16, np.uint64)
    assert bandwidth.stream_xor(ones, 4) == 0 and bandwidth.stream_xor(ones[:-1], 8) == 1


def test_read_bandwidth_names_the_c_probe(lib):
    bw = bandwidth.read_bandwidth(n_threads=2, buffer_bytes=(8 << 20) + 24, passes=2, streams=(2, 4))
    assert set(bw) == {"gbps", "n_threads", "buffer_bytes", "llc_bytes", "method"}
    assert bw["gbps"] > 0 and bw["n_threads"] == 2 and bw["buffer_bytes"] == (8 << 20) + 24
    path = lib.tb_stream_read_path().decode()
    assert path in ("avx2", "portable")
    assert bw["method"].startswith("C interleaved read, ") and "streams per thread, best of 2/4" in bw["method"]
    assert f", {path}, best of 2 passes" in bw["method"]


@pytest.mark.parametrize("content,reason", [(None, "C probe not built: run make"),
                                            (b"not a library", "C probe failed to load")])
def test_read_bandwidth_falls_back_to_numpy(tmp_path, monkeypatch, content, reason):
    path = tmp_path / "libtritbench_stream.so"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setattr(bandwidth, "LIB_PATH", path)
    assert isinstance(bandwidth.stream_library(), str)
    with pytest.raises(RuntimeError, match=reason):
        bandwidth.stream_xor(np.ones(8, np.uint64), 4)
    bw = bandwidth.read_bandwidth(n_threads=2, buffer_bytes=4 << 20, passes=1)
    assert bw["gbps"] > 0 and bw["buffer_bytes"] == 4 << 20
    assert bw["method"].startswith("numpy bitwise_or.reduce over uint64, best of 1 passes (") and reason in bw["method"]
