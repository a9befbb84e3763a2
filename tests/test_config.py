import pytest

from tritbench.errors import ConfigError
from tritbench.plan.cases import build_plan, case_id
from tritbench.plan.suite import RunConfig, load_suite, make_config


def write(tmp_path, text):
    p = tmp_path / "suite.toml"
    p.write_text(text)
    return p


def test_default_suite_is_the_documented_one():
    cfg = make_config(load_suite(None), {})
    assert cfg.backends == ["llamacpp"]
    assert cfg.models == ["small"]
    assert cfg.formats == ["f16", "q4_0", "tq1_0", "tq2_0"]
    assert [w.name for w in cfg.workloads()] == ["pp128", "tg64"]
    assert cfg.repetitions == 6 and cfg.warmups == 2


def test_suite_file_and_overrides(tmp_path):
    p = write(tmp_path, 'models = ["tiny"]\nformats = ["tq2_0"]\nn_prompt = [32, 64]\nn_gen = 0\n'
                        'pg = [[16, 4]]\ndepth = [0, 8]\nthreads = [1]\nrepetitions = 3\n[options]\nn_batch = [16]\n')
    cfg = make_config(load_suite(p), {"formats": ["f16", "tq1_0"], "repetitions": None})
    assert cfg.formats == ["f16", "tq1_0"]  # the command line wins
    assert cfg.repetitions == 3  # None means "not given on the command line"
    assert cfg.options == {"n_batch": [16]}
    assert [w.name for w in cfg.workloads()] == [
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
        ({"repetitions": 0}, "repetitions must be between 1 and"),
        ({"warmups": -1}, "warmups must be between 0 and"),
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
        cfg.workloads()


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


# A value unlike the default for every setting, as a suite file writes it: each must arrive in RunConfig as given.
EVERY_KEY = """
backends = ["numpy"]
models = ["tiny"]
formats = ["fp32"]
kinds = ["gemv"]
n_prompt = [7]
n_gen = [3]
pg = [[5, 2]]
depth = [0, 4]
threads = [1]
repetitions = 4
warmups = 1
shapes = ["64x32"]
M = [1, 2]
cache = ["hot"]
out = "elsewhere"
output = "csv"
timeout = 12.5
energy = "none"
idle_s = 0
seed = 9
embd_type = "q8_0"
output_type = "q8_0"
profile = "mine"
rounds = 2
[options]
nbits_block = [64]
[profiles.mine]
cpus = 1
"""
EXPECTED = {
    "backends": ["numpy"], "models": ["tiny"], "formats": ["fp32"], "kinds": ["gemv"], "n_prompt": [7],
    "n_gen": [3], "pg": [[5, 2]], "depth": [0, 4], "threads": [1], "repetitions": 4, "warmups": 1,
    "shapes": ["64x32"], "M": [1, 2], "cache": ["hot"], "out": "elsewhere", "output": "csv", "timeout": 12.5,
    "energy": "none", "idle_s": 0.0, "seed": 9, "embd_type": "q8_0", "output_type": "q8_0", "profile": "mine",
    "rounds": 2, "options": {"nbits_block": [64]}, "profiles": {"mine": {"cpus": 1}},
}


def test_every_setting_arrives_from_a_suite_file(tmp_path):
    assert set(EXPECTED) == set(RunConfig.__dataclass_fields__), "a setting this test does not cover"
    cfg = make_config(load_suite(write(tmp_path, EVERY_KEY)), {})
    for key, want in EXPECTED.items():
        got = getattr(cfg, key)
        assert got == want and type(got) is type(want), f"{key}: {got!r} != {want!r}"


def test_a_partial_suite_keeps_the_other_defaults(tmp_path):
    cfg = make_config(load_suite(write(tmp_path, 'models = ["tiny"]\n')), {})
    default = make_config(load_suite(None), {})
    assert cfg.models == ["tiny"] and cfg.formats == default.formats and cfg.timeout == 1800.0


def test_a_renamed_key_says_its_new_name(tmp_path):
    with pytest.raises(ConfigError, match="'workloads' is now called 'kinds'"):
        load_suite(write(tmp_path, 'workloads = ["pp"]\n'))


@pytest.mark.parametrize(
    "override,message",
    [
        ({"repetitions": 1_000_000_000}, "repetitions must be between 1 and 10000"),
        ({"warmups": 10**6}, "warmups must be between 0 and 1000"),
        ({"timeout": float("nan")}, "timeout must be a finite number"),
        ({"timeout": float("inf")}, "timeout must be a finite number"),
        ({"idle_s": float("nan")}, "idle_s must be a finite number"),
        ({"seed": -1}, "seed must be between 0 and 2\\*\\*63-1"),
        ({"out": "  "}, "out is empty"),
        ({"profiles": {"tiny-box": {"memory": 1.5}}, "profile": "tiny-box"}, "must be at least 64 MiB"),
    ],
)
def test_values_no_run_can_take_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config({}, override)


@pytest.mark.parametrize("option", ["n_batch=0", "n_ubatch=-3", "threads_batch=0", "n_ctx=0"])
def test_backend_options_below_their_minimum_are_refused(option, tb_home, tiny_models, monkeypatch):
    monkeypatch.setenv("TRITBENCH_HOME", str(tb_home))
    name, value = option.split("=")
    with pytest.raises(ConfigError, match=f"option {name} must be >= 1"):
        build_plan(make_config({}, {"models": ["tiny"], "formats": ["f16"], "options": {name: [value]}}), 1)
