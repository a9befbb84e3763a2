"""What a user sees on bad input: one line naming the problem, exit code 2, no traceback, no results file."""

import pytest

from .conftest import read_jsonl, run_bench


def assert_clean_error(proc, fragment, out_dir=None):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bench: error:") and fragment in lines[0], lines[0]
    if out_dir is not None:
        assert not out_dir.exists() or not any(out_dir.iterdir()), "a results file was left behind"


def gguf_truncated(src, dst, keep):
    dst.write_bytes(src.read_bytes()[:keep])
    return dst


@pytest.fixture()
def bad_files(tmp_path, tiny_models):
    src = tiny_models["tq2_0"]
    size = src.stat().st_size
    zip_like = tmp_path / "model.gguf"
    zip_like.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    return {
        "missing": (tmp_path / "nope.gguf", "model file not found"),
        "not gguf": (zip_like, "not a GGUF file"),
        "empty": (gguf_truncated(src, tmp_path / "empty.gguf", 0), "GGUF"),
        "cut header": (gguf_truncated(src, tmp_path / "h.gguf", 12), "truncated"),
        "cut data": (gguf_truncated(src, tmp_path / "d.gguf", size - 1000), "truncated"),
    }


@pytest.mark.parametrize("case", ["missing", "not gguf", "empty", "cut header", "cut data"])
def test_bad_model_files(case, bad_files, tb_home, tmp_path):
    path, fragment = bad_files[case]
    out = tmp_path / "out"
    proc = run_bench(["run", "-m", str(path), "-p", "8", "-n", "4", "--out", str(out)], tb_home)
    assert_clean_error(proc, fragment, out)
    info = run_bench(["models", "info", str(path)], tb_home)
    assert_clean_error(info, fragment)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["-m", "hugee"], "unknown model 'hugee'"),
        (["-b", "nope"], "unknown backend 'nope'"),
        (["-f", "q5_k"], "no selected backend has format 'q5_k'"),
        (["-p", "-5"], "n_prompt must be >= 0"),
        (["-n", "x"], "-n takes comma-separated integers"),
        (["-t", "0"], "threads must be >= 1"),
        (["-r", "0"], "repetitions must be between 1 and"),
        (["--pg", "1,2,3"], "--pg takes N_PROMPT,N_GEN"),
        (["--opt", "n_batch"], "--opt takes NAME=VALUE"),
        (["--opt", "nbatch=3"], "unknown option 'nbatch'"),
        (["-o", "xml"], "unknown output format 'xml'"),
        (["-p", "0", "-n", "0"], "no workload to run"),
    ],
)
def test_bad_arguments(args, fragment, tb_home, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-m", "tiny", *args, "--out", str(out)] if "-m" not in args
                     else ["run", *args, "--out", str(out)], tb_home)
    assert_clean_error(proc, fragment, out)


def test_bad_suite_files(tb_home, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('models = ["tiny"]\nrepetiions = 3\n')
    assert_clean_error(run_bench(["run", str(suite), "--out", str(tmp_path / "o")], tb_home),
                       "unknown key 'repetiions'", tmp_path / "o")
    suite.write_text('models = ["tiny"\n')
    assert_clean_error(run_bench(["run", str(suite)], tb_home), "invalid TOML")
    assert_clean_error(run_bench(["run", str(tmp_path / "absent.toml")], tb_home), "suite file not found")


def test_usage_errors_exit_2(tb_home):
    proc = run_bench(["run", "--no-such-flag"], tb_home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_resume_without_a_run(tb_home, tmp_path):
    proc = run_bench(["run", "-m", "tiny", "--resume", "--out", str(tmp_path / "empty")], tb_home)
    assert_clean_error(proc, "no run to resume")


def test_models_commands(tb_home, tiny_models):
    listing = run_bench(["models", "list"], tb_home)
    assert listing.returncode == 0
    for preset in ("tiny", "small", "medium", "1b", "3b"):
        assert preset in listing.stdout
    synth = run_bench(["models", "synth", "tiny", "-f", "tq1_0,tq2_0"], tb_home)
    assert synth.returncode == 0
    paths = [ln.split("\t")[2] for ln in synth.stdout.splitlines()]
    assert paths == [str(tiny_models["tq1_0"]), str(tiny_models["tq2_0"])]
    info = run_bench(["models", "info", str(tiny_models["tq1_0"]), "--json"], tb_home)
    assert info.returncode == 0
    assert '"format": "tq1_0"' in info.stdout and '"bits_per_weight": 1.6875' in info.stdout


def test_list_backends(tb_home):
    proc = run_bench(["list", "backends"], tb_home)
    assert proc.returncode == 0
    assert "llamacpp" in proc.stdout and "tq1_0" in proc.stdout and "n_batch" in proc.stdout


def test_embedding_and_output_types_are_configurable(tb_home, tmp_path):
    synth = run_bench(["models", "synth", "tiny", "-f", "tq2_0", "--embd-type", "q8_0", "--output-type", "q8_0"],
                      tb_home)
    assert synth.returncode == 0, synth.stderr
    name, fmt, path = synth.stdout.split()
    assert name == "tiny_embd-q8_0_output-q8_0" and fmt == "tq2_0"
    info = run_bench(["models", "info", path, "--json"], tb_home)
    assert '"embd_type": "q8_0"' in info.stdout and '"output_type": "q8_0"' in info.stdout
    out = tmp_path / "out"
    proc = run_bench(["run", "-m", "tiny", "-f", "tq2_0", "--embd-type", "q8_0", "-p", "8", "-n", "0", "-r", "1",
                      "--warmups", "0", "--out", str(out)], tb_home)
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_jsonl(out)
    assert rec["model"]["embd_type"] == "q8_0" and rec["model"]["output_type"] == "f16"
    bad = run_bench(["run", "-m", "tiny", "--output-type", "q3", "--out", str(out)], tb_home)
    assert_clean_error(bad, "output_type 'q3' not supported")


def test_bench_cost_is_registered(tb_home):
    import json

    proc = run_bench(["cost", "-m", "tiny", "--no-probe", "--bandwidth", "20", "--json"], tb_home)
    assert proc.returncode == 0, proc.stderr
    paper = json.loads(proc.stdout)["paper"]
    assert paper["fp16_joules"] > paper["ternary_joules"] > 0 and paper["ratio"] > 1
    assert_clean_error(run_bench(["cost", "-m", "nope", "--no-probe"], tb_home), "nope")


@pytest.mark.parametrize("where", ["a file", "under a file", "proc", "too long", "empty"])
def test_an_unwritable_results_folder_is_refused_before_anything_runs(where, tb_home, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out, fragment = {
        "a file": (str(afile), "cannot write results to"),
        "under a file": (str(afile / "sub"), "cannot write results to"),
        "proc": ("/proc", "cannot write results to /proc"),
        "too long": (str(tmp_path / ("x" * 300)), "File name too long"),
        "empty": ("", "out is empty"),
    }[where]
    # a preset that is not synthesized yet: the refusal must come before minutes of synthesis
    proc = run_bench(["run", "-m", "medium", "-f", "tq2_0", "--out", out], tb_home, timeout=60)
    assert_clean_error(proc, fragment)
    assert not list((tb_home / "models").glob("medium-*"))


def test_workloads_longer_than_the_models_context_are_refused(tb_home, tiny_models, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-m", "tiny", "-f", "tq2_0", "-p", "100000", "-n", "0", "--out", str(out)], tb_home)
    assert_clean_error(proc, "need 100000 tokens of context", out)
    assert "context length is 512" in proc.stderr


def test_metadata_from_a_model_file_reaches_the_terminal_inert(tb_home, tmp_path):
    import numpy as np
    from gguf import GGMLQuantizationType

    from .test_models_info import write_gguf

    hostile = "evil\x1b]0;pwned\x07 [bold red]x[/] [link=http://x]y[/link]\r\nz"
    path = write_gguf(tmp_path / "m.gguf", {"token_embd.weight": (np.zeros((4, 256), np.float32),
                                                                  GGMLQuantizationType.F16)}, general__name=hostile)
    proc = run_bench(["models", "info", str(path)], tb_home)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\r" not in proc.stdout
    assert "[bold red]x[/]" in proc.stdout  # shown as the text it is, not applied as markup


def test_a_models_folder_that_cannot_be_written_is_one_line(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("x")
    out = tmp_path / "out"
    proc = run_bench(["run", "-m", "tiny", "-f", "tq2_0", "--out", str(out)], home)
    assert_clean_error(proc, "cannot write the synthesized model into", out)
    assert "TRITBENCH_HOME" in proc.stderr


def test_ctrl_c_while_the_command_loads_is_one_line_and_130(monkeypatch, capsys):
    import tritbench.cli as cli
    import tritbench.cli.commands as commands

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "app", interrupted)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 130 and capsys.readouterr().err == "bench: interrupted\n"


def test_a_hostile_model_file_name_stays_inert_from_run_to_report(tb_home, tiny_models, tmp_path):
    import shutil

    name = "evil\x1b]0;pwned\x07[bold red]x |y| ![i](http:z) <b>"  # no "/": it is a file name
    model = tmp_path / f"{name}.gguf"
    shutil.copyfile(tiny_models["tq2_0"], model)
    out = tmp_path / "out"
    proc = run_bench(["run", "-m", str(model), "-p", "8", "-n", "4", "-r", "1", "--warmups", "0", "--idle-s", "0",
                      "--out", str(out)], tb_home)
    assert proc.returncode == 0, proc.stderr
    for text in (proc.stdout, proc.stderr):
        assert "\x1b" not in text and "\x07" not in text
    (rec,) = read_jsonl(out)[:1]
    assert rec["model"]["path"].endswith(f"{name}.gguf")  # the record keeps it as it is: printers take care
    md = run_bench(["report", str(out), "--format", "md"], tb_home)
    page = run_bench(["report", str(out), "-o", str(tmp_path / "r.html")], tb_home)
    assert md.returncode == 0 and page.returncode == 0, md.stderr + page.stderr
    assert "\x1b" not in md.stdout and "![i]" not in md.stdout and "<b>" not in md.stdout
    html = (tmp_path / "r.html").read_text()
    assert "\x1b" not in html and "<b>" not in html.split("<body", 1)[1].replace("<b>1.58", "")
