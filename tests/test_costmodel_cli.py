"""`bench cost` through typer's CliRunner on a local app (tritbench.cli registers the same function)."""

import json

import pytest
import typer
from typer.testing import CliRunner

from tritbench.cli.cost import cost
from tritbench.errors import ConfigError

app = typer.Typer()


@pytest.fixture(autouse=True)
def _own_home(tb_home, monkeypatch):
    """Model files and their digest cache go to the test session's home, never ~/.cache."""
    monkeypatch.setenv("TRITBENCH_HOME", str(tb_home))
app.command("cost")(cost)


@app.command("noop")
def _noop() -> None:  # a second command keeps `cost` a named sub-command, as in tritbench.cli
    pass


def invoke(*args: str):
    return CliRunner().invoke(app, ["cost", *args], env={"COLUMNS": "120"})


def test_json_has_the_papers_figures_and_ours():
    res = invoke("-m", "tiny", "--no-probe", "--bandwidth", "25", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    paper = data["paper"]
    assert paper["fp16_joules"] > paper["ternary_joules"] > 0
    assert paper["ratio"] == pytest.approx(paper["fp16_joules"] / paper["ternary_joules"])
    assert data["per_op_ratio"] == pytest.approx(71.43, abs=0.01)
    assert [r["format"] for r in data["formats"]] == ["f16", "q4_0", "tq2_0", "tq1_0"]
    for r in data["formats"]:
        assert r["roofline_tokens_per_s"]["user"] == pytest.approx(25e9 / r["bytes_per_token"])
        assert r["roofline_tokens_per_s"]["probed"] is None
        assert r["total_j_per_token"] > r["arith_j_per_token"]
    assert data["sparsity"]["zero_fraction"] == pytest.approx(1 / 3, abs=0.01)
    assert len(data["projections"]) == 28 and data["bandwidth_probe"] is None


def test_flags_alone_and_45nm():
    res = invoke("--hidden", "512", "--layers", "4", "--ffn", "1536", "--heads", "8", "--vocab", "1000", "--seq", "128",
                 "--node", "45nm", "--no-probe", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["arch"]["kv_heads"] == 8 and data["arch"]["head_dim"] == 64 and data["arch"]["seq"] == 128
    assert data["paper"]["seq"] == 128 and data["node"] == "45nm"
    assert data["per_op_ratio"] == pytest.approx(50.0)


def test_flags_override_a_preset_and_a_file(tiny_models):
    res = invoke("-m", "tiny", "--layers", "4", "--no-probe", "--json")
    assert json.loads(res.stdout)["arch"]["layers"] == 4
    res = invoke("-m", str(tiny_models["tq1_0"]), "--no-probe", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["arch"]["hidden"] == 256 and data["sparsity"]["source"].startswith("measured:")


def test_table_fits_120_columns():
    res = invoke("-m", "small", "--no-probe", "--bandwidth", "30")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    text = res.stdout
    for word in ("tq1_0", "tq2_0", "q4_0", "f16", "100B", "71.4x", "paper", "+data"):
        assert word in text


def test_results_are_joined(tmp_path):
    from .test_costmodel import _record

    path = tmp_path / "run-1.jsonl"
    path.write_text(json.dumps(_record("tq2_0", 150.0, metrics__read_bandwidth={"gbps": 20.0})) + "\n")
    res = invoke("-m", "small", "--no-probe", "--bandwidth", "10", "--results", str(tmp_path), "--json")
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)["measured"]
    assert row["bandwidth_source"] == "record" and 0 < row["pct_of_roofline"] < 100
    assert row["model"] == "small" and row["test"] == "tg64"
    table = invoke("-m", "small", "--no-probe", "--results", str(path))
    assert "Measured cases" in table.stdout and "%" in table.stdout


@pytest.mark.parametrize("args,fragment", [
    (["-m", "hugee"], "unknown model 'hugee'"),
    (["-m", "tiny", "--node", "5nm"], "unknown process node '5nm'"),
    (["-m", "tiny", "--energy-table", "/nonexistent/e.toml"], "energy table file not found"),
    (["-m", "tiny", "--hidden", "-5"], "--hidden must be a positive integer"),
    (["--hidden", "256"], "missing: --layers, --ffn, --heads, --vocab"),
    (["-m", "tiny", "--bandwidth", "-1"], "--bandwidth must be a positive number"),
    (["-m", "tiny", "--results", "/nonexistent/run"], "results file or folder not found"),
    (["--hidden", "256", "--layers", "2", "--ffn", "512", "--heads", "3", "--kv-heads", "2", "--vocab", "300"],
     "multiple of kv-heads"),
])
def test_bad_input_is_a_one_line_config_error(args, fragment):
    res = invoke(*args, "--no-probe")
    assert isinstance(res.exception, ConfigError), res.output
    message = str(res.exception)
    assert fragment in message and "\n" not in message


def test_bad_energy_table_keys(tmp_path):
    toml = tmp_path / "e.toml"
    toml.write_text('[ops."7nm"]\nfp16_fma = 0.3\n')
    res = invoke("-m", "tiny", "--no-probe", "--energy-table", str(toml))
    assert isinstance(res.exception, ConfigError) and "unknown key ops.7nm.fp16_fma" in str(res.exception)
    toml.write_text('[ops."7nm"]\nint8_add = 0.014\n')
    data = json.loads(invoke("-m", "tiny", "--no-probe", "--energy-table", str(toml), "--json").stdout)
    assert data["per_op_ratio"] == pytest.approx(0.5 / 0.014)


def test_measured_names_are_printed_as_plain_text(tmp_path):
    from .test_costmodel import _record

    rec = _record("tq2_0", 150.0, metrics__read_bandwidth={"gbps": 20.0})
    rec["model"]["name"] = "s\x1b]0;x\x07[b]m"  # short: the column is narrow
    (tmp_path / "run-1.jsonl").write_text(json.dumps(rec) + "\n")
    res = invoke("-m", "small", "--no-probe", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout and "[b]m" in res.stdout
