import pytest

from bench.config import RunConfig, build_plan, case_id, load_suite, make_config, parse_suite
from bench.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "suite.toml"
    p.write_text(text)
    return p


def test_default_suite_is_the_documented_one():
    cfg = make_config(load_suite(None), {})
    assert cfg.backends == ["llamacpp"]
    assert cfg.models == ["small"]
    assert cfg.formats == ["f16", "q4_0", "tq1_0", "tq2_0"]
    assert [w.name for w in cfg.tests()] == ["pp128", "tg64"]
    assert cfg.repetitions == 5 and cfg.warmups == 2


def test_suite_file_and_overrides(tmp_path):
    p = write(tmp_path, 'models = ["tiny"]\nformats = ["tq2_0"]\nn_prompt = [32, 64]\nn_gen = 0\n'
                        'pg = [[16, 4]]\ndepth = [0, 8]\nthreads = [1]\nrepetitions = 3\n[options]\nn_batch = [16]\n')
    cfg = make_config(load_suite(p), {"formats": ["f16", "tq1_0"], "repetitions": None})
    assert cfg.formats == ["f16", "tq1_0"]  # the command line wins
    assert cfg.repetitions == 3  # None means "not given on the command line"
    assert cfg.options == {"n_batch": [16]}
    assert [w.name for w in cfg.tests()] == [
        "pp32", "pp64", "pg16,4", "pp32 @ d8", "pp64 @ d8", "pg16,4 @ d8"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("modles = ['tiny']", "unknown key 'modles'"),
        ("n_prompt = ['a']", "'n_prompt' takes a list of ints"),
        ("repetitions = 'five'", "'repetitions' takes a int"),
        ("pg = [1, 2]", "'pg' takes a list of"),
        ("options = 3", "'options' must be a table"),
        ("models = [", "invalid TOML"),
    ],
)
def test_bad_suites(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(write(tmp_path, text))


def test_missing_suite_file(tmp_path):
    with pytest.raises(ConfigError, match="suite file not found"):
        load_suite(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "override,message",
    [
        ({"repetitions": 0}, "repetitions must be >= 1"),
        ({"warmups": -1}, "warmups must be >= 0"),
        ({"threads": [0]}, "threads must be >= 1"),
        ({"rounds": 9}, "rounds must be between 1 and repetitions"),
        ({"output": "xml"}, "unknown output format 'xml'"),
        ({"pg": [[1, 2, 3]]}, "two numbers"),
    ],
)
def test_invalid_values(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config({}, override)


def test_negative_counts_are_errors():
    cfg = make_config({}, {"n_prompt": [-1]})
    with pytest.raises(ConfigError, match="n_prompt must be >= 0"):
        cfg.tests()


def test_plan_is_the_cartesian_product(tb_home, tiny_models, monkeypatch):
    monkeypatch.setenv("TRITBENCH_HOME", str(tb_home))
    cfg = make_config({}, {"models": ["tiny"], "formats": ["f16", "tq2_0"], "threads": [1, 2],
                           "options": {"flash_attn": ["0", "1"]}, "n_prompt": [8], "n_gen": [4]})
    plan = build_plan(cfg, default_threads=2)
    assert len(plan) == 2 * 2 * 2
    assert {(v.model.format, v.n_threads, v.options["flash_attn"]) for v in plan} == {
        (f, t, fa) for f in ("f16", "tq2_0") for t in (1, 2) for fa in (False, True)}
    assert all(v.options["n_batch"] == 2048 for v in plan)  # backend default filled in
    assert all([w.name for w in v.workloads] == ["pp8", "tg4"] for v in plan)
    ids = {case_id(v, w, "sha") for v in plan for w in v.workloads}
    assert len(ids) == 16


def test_threads_default_to_the_given_core_count(tb_home, tiny_models, monkeypatch):
    monkeypatch.setenv("TRITBENCH_HOME", str(tb_home))
    plan = build_plan(make_config({}, {"models": ["tiny"], "formats": ["f16"]}), default_threads=3)
    assert [v.n_threads for v in plan] == [3]


@pytest.mark.parametrize(
    "override,message",
    [
        ({"backends": ["nope"]}, "unknown backend 'nope'"),
        ({"formats": ["q5_k"]}, "no selected backend has format 'q5_k'"),
        ({"options": {"n_bacth": ["1"]}}, "unknown option 'n_bacth'"),
        ({"options": {"n_batch": ["big"]}}, "option n_batch takes a int"),
        ({"options": {"flash_attn": ["maybe"]}}, "takes a boolean"),
    ],
)
def test_plan_errors(override, message, tb_home, monkeypatch):
    monkeypatch.setenv("TRITBENCH_HOME", str(tb_home))
    with pytest.raises(ConfigError, match=message):
        build_plan(make_config({}, {"models": ["tiny"], **override}), default_threads=1)


def test_parse_suite_accepts_every_runconfig_field():
    data = {name: getattr(RunConfig(), name) for name in RunConfig.__dataclass_fields__}
    # TOML has no None: give the optional keys values
    data.update(rounds=2, embd_type="q8_0", output_type="f16", profile="edge-1c-1g")
    assert set(parse_suite(data)) == set(data)
