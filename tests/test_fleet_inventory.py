"""The fleet's pure parts: the inventory's checks, quoting for the device's shell, the device's platform tags,
the probe's readers and the tritbench wheel for a device."""

from __future__ import annotations

import json
import shlex
import subprocess
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tritbench.errors import ConfigError
from tritbench.fleet import bundle, probe
from tritbench.fleet.inventory import parse_inventory
from tritbench.fleet.remote import quote

GOOD = """
[[hosts]]
name = "pi5-a"
host = "192.168.1.40"
port = 2222
user = "bench"
python = "/usr/bin/python3"
work_dir = "/srv/tritbench"
labels = { arch = "aarch64", board = "Raspberry Pi 5" }
max_threads = 4
env = { LLAMA_CPP_LIB_PATH = "/opt/llama/lib" }

[[hosts]]
name = "x86.box_1"
host = "box1"
"""


def test_a_good_inventory_reads_with_defaults(tmp_path):
    a, b = parse_inventory(GOOD, tmp_path, "lab.toml")
    assert (a.name, a.port, a.user, a.max_threads, a.labels["board"]) == ("pi5-a", 2222, "bench", 4, "Raspberry Pi 5")
    assert a.env == {"LLAMA_CPP_LIB_PATH": "/opt/llama/lib"} and a.address == "bench@192.168.1.40:2222"
    assert (b.port, b.user, b.python, b.work_dir, b.accept_new_host_key) == (22, None, "python3", "~/.tritbench", False)


@pytest.mark.parametrize("text, fragment", [
    ("", "no [[hosts]] tables"),
    ("[[hosts]]\nhost = 'a'\n", "'name' is required"),
    ("[[hosts]]\nname = 'a'\n", "'host' is required"),
    ("[[hosts]]\nname = 'a;rm -rf ~'\nhost = 'a'\n", "may hold only letters"),
    ("[[hosts]]\nname = '../up'\nhost = 'a'\n", "may hold only letters"),
    ("[[hosts]]\nname = 'a'\nhost = '-oProxyCommand=touch x'\n", "not a host name"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\nport = 0\n", "'port' must be an integer"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\nport = true\n", "'port' must be an integer"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\nmax_threads = 0\n", "'max_threads' must be a positive"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\nhostname = 'b'\n", "unknown field 'hostname'"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\nenv = { 'A B' = 'x' }\n", "not an environment variable name"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\nlabels = { x = [1] }\n", "'labels.x' must be a string"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\nidentity_file = 'nope'\n", "identity_file not found"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\naccept_new_host_key = 'yes'\n", "must be true or false"),
    ("[[hosts]]\nname = 'a'\nhost = 'a'\n[[hosts]]\nname = 'a'\nhost = 'b'\n", "two hosts are named 'a'"),
    ("hosts = 3\n", "no [[hosts]] tables"),
    ("[lab]\n", "unknown key 'lab'"),
    ("[[hosts]\n", "invalid TOML"),
])
def test_bad_inventories_are_one_line_naming_the_field(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_inventory(text, tmp_path, "lab.toml")
    assert fragment in str(exc.value) and "\n" not in str(exc.value) and str(exc.value).startswith("lab.toml")


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                        max_size=20), min_size=1, max_size=5))
def test_quote_gives_the_shell_exactly_the_words(words):
    assert shlex.split(quote(words)) == words


def test_quoted_words_are_never_run_by_a_real_shell(tmp_path):
    canary = tmp_path / "pwned"
    words = ["echo", f"$(touch {canary})", f"`touch {canary}`", f"; touch {canary}", f"' ; touch {canary}; '"]
    out = subprocess.run(["sh", "-c", quote(words)], capture_output=True, text=True)
    assert out.returncode == 0 and not canary.exists()
    assert out.stdout.strip() == " ".join(words[1:])


def test_platform_tags_follow_the_device_glibc():
    t = bundle.Target("aarch64", "3.11.2", "cp311", "2.28")
    tags = t.platforms()
    assert "manylinux_2_28_aarch64" in tags and "manylinux_2_17_aarch64" in tags and "linux_aarch64" in tags
    assert "manylinux_2_31_aarch64" not in tags and not any("x86_64" in x for x in tags)
    assert bundle.Target("x86_64", "3.12.1", "cp312", None).platforms() == ["linux_x86_64"]  # musl: pure wheels
    assert bundle.Target.from_probe({"arch": "x86_64", "python": "3.11.2", "python_tag": "cp311", "libc": "glibc",
                                     "libc_version": "2.36"}).short_python == "3.11"


def test_probe_readers():
    arm = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
    assert probe.cpu_model(arm) == "Raspberry Pi 5 Model B Rev 1.0"
    assert probe.cpu_model("model name\t: AMD EPYC 9R14\n") == "AMD EPYC 9R14"
    assert probe.cpu_model("") is None and probe.cpu_model(None) is None
    assert probe.mem_total_bytes("MemTotal:        8123456 kB\nMemFree: 1 kB\n") == 8123456 * 1024
    assert probe.mem_total_bytes("MemTotal: lots\n") is None


def test_probe_thermal_zones_from_a_sysfs_tree(tmp_path):
    for i, (kind, milli) in enumerate([("cpu-thermal", "52350"), ("gpu", "bad")]):
        z = tmp_path / f"thermal_zone{i}"
        z.mkdir()
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(milli + "\n")
    assert probe.thermal_c(str(tmp_path)) == {"cpu-thermal:thermal_zone0": 52.35}
    assert probe.thermal_c(str(tmp_path / "none")) == {}


def test_probe_runs_with_the_standard_library_alone(tmp_path):
    """The device may have nothing but python3: the probe is sent as source and must import nothing else."""
    src = Path(probe.__file__).read_text()
    out = subprocess.run(["python3", "-I", "-S", "-", str(tmp_path / "w")], input=src, capture_output=True,
                         text=True, check=True)
    info = json.loads(out.stdout)
    assert info["work_dir_writable"] and info["arch"] and info["python_tag"].startswith("cp")


def test_the_device_wheel_holds_the_package_its_entry_points_and_no_sources(tmp_path):
    wheel = bundle.build_tritbench_wheel("x86_64", [])
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "tritbench/fleet/agent.py" in names and "tritbench/backends/onnx/backend.py" in names
    assert "tritbench/suites/default.toml" in names
    assert "tritbench/backends/onnx/lib/libtritbench_ternary.so" in names
    assert not any("/csrc/" in n or "__pycache__" in n or n.startswith("tests/") for n in names)
    assert "tritbench.backends" in entry_points and "onnx" in entry_points
    assert bundle.build_tritbench_wheel("x86_64", []) == wheel  # same sources: the same (cached) wheel


def test_the_mirror_knows_when_every_planned_case_has_a_record(tmp_path):
    """Then the controller looks for the done marker at every short poll instead of every 30 s; a mirror resumed
    with records already copied counts them."""
    from tritbench.fleet.controller import Mirror

    plan = tmp_path / "fleet-x-pi.planned"
    mirror = Mirror(tmp_path, "pi", "/runs/x", plan)
    assert not mirror.all_measured()  # no plan yet: nothing is known to be finishing
    plan.write_text("".join(json.dumps({"run_id": "r1", "case_id": c}) + "\n" for c in ("a", "b")))
    record = {"run_id": "r1", "case_id": "a", "status": "ok", "metrics": {}}
    (tmp_path / "pi-run-r1.jsonl").write_text(json.dumps(record) + "\n")
    assert not mirror.all_measured()
    mirror.seen.add("b")  # what pull() adds for each line it copies
    assert mirror.all_measured()
