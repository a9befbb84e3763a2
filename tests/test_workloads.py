import pytest
from hypothesis import given
from hypothesis import strategies as st

from tritbench.errors import ConfigError
from tritbench.plan.workloads import Workload, llm_workloads


@pytest.mark.parametrize(
    "text,expected",
    [
        ("pp512", Workload("pp", 512, 0, 0)),
        ("tg128", Workload("tg", 0, 128, 0)),
        ("pg512,128", Workload("pg", 512, 128, 0)),
        ("tg128 @ d4096", Workload("tg", 0, 128, 4096)),
        ("pp64@d16", Workload("pp", 64, 0, 16)),
    ],
)
def test_parse(text, expected):
    assert Workload.parse(text) == expected


@pytest.mark.parametrize("text", ["", "pp", "xx12", "pg12", "tg12,3", "pp-1", "tg0", "pp12 @ 16"])
def test_parse_rejects(text):
    with pytest.raises(ConfigError):
        Workload.parse(text)


@given(st.sampled_from(["pp", "tg", "pg"]), st.integers(1, 10**6), st.integers(1, 10**6), st.integers(0, 10**6))
def test_name_round_trips(kind, a, b, d):
    w = Workload(kind, a if kind != "tg" else 0, b if kind != "pp" else 0, d)
    assert Workload.parse(w.name) == w
    assert Workload.from_dict(w.to_dict()) == w


def test_llm_workloads_like_llama_bench():
    ws = llm_workloads([128, 0], [64], [(32, 8)], [0, 256])
    assert [w.name for w in ws] == ["pp128", "tg64", "pg32,8", "pp128 @ d256", "tg64 @ d256", "pg32,8 @ d256"]
    assert ws[-1].n_tokens == 256 + 32 + 8


def test_negative_and_empty_are_errors():
    with pytest.raises(ConfigError, match="n_prompt must be >= 0"):
        llm_workloads([-5], [64], [], [0])
    with pytest.raises(ConfigError, match="no workload"):
        llm_workloads([0], [0], [], [0])
