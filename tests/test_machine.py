# ruff: noqa: E501  (captured /proc lines are as long as the kernel prints them)
"""Machine fingerprint readers on captured /proc and /sys files from x86 and aarch64 machines."""

from pathlib import Path

from tritbench import machine

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 154
model name\t: 12th Gen Intel(R) Core(TM) i7-1260P
stepping\t: 3
cpu MHz\t\t: 2100.000
cache size\t: 18432 KB
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2 avx_vnni
bogomips\t: 4992.00

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: 12th Gen Intel(R) Core(TM) i7-1260P
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2 avx_vnni
"""

# A Raspberry Pi 5 (Cortex-A76): no `model name`, no `flags`; `Features` and `CPU part` instead.
AARCH64_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

Revision\t: d04170
Serial\t\t: 6a2c0e7d3b1f4a55
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""

# Jetson Orin (Cortex-A78AE), which reports no Model line
JETSON_CPUINFO = """processor\t: 0
model name\t: ARMv8 Processor rev 1 (v8l)
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg
CPU implementer\t: 0x41
CPU part\t: 0xd42
"""


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_x86_cpuinfo():
    info = machine.parse_cpuinfo(X86_CPUINFO)
    assert info["cpu_model"] == "12th Gen Intel(R) Core(TM) i7-1260P"
    assert info["vendor"] == "GenuineIntel"
    assert machine.isa_features("x86_64", info["flags"]) == ["avx", "avx2", "fma", "f16c", "avx_vnni"]


def test_aarch64_cpuinfo_names_the_core():
    info = machine.parse_cpuinfo(AARCH64_CPUINFO)
    assert info["cpu_model"] == "Cortex-A76" and info["board"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert info["vendor"] == "Arm"
    assert machine.isa_features("aarch64", info["flags"]) == ["asimd", "asimddp", "fphp", "asimdhp"]
    assert machine.parse_cpuinfo(JETSON_CPUINFO)["cpu_model"] == "Cortex-A78AE"
    assert machine.parse_cpuinfo("CPU implementer\t: 0x51\nCPU part\t: 0x804\n")["cpu_model"] == "Qualcomm part 0x804"


def test_fingerprint_from_a_captured_aarch64_tree(tmp_path, monkeypatch):
    write(tmp_path, "proc/cpuinfo", AARCH64_CPUINFO)
    write(tmp_path, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    fp = machine.fingerprint(tmp_path)
    assert fp["arch"] == "aarch64" and fp["board"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert "asimddp" in fp["isa"] and fp["hypervisor"] is False
    again = machine.fingerprint(tmp_path)
    assert again["id"] == fp["id"]  # stable
    write(tmp_path, "proc/cpuinfo", X86_CPUINFO)
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    assert machine.fingerprint(tmp_path)["id"] != fp["id"]


def test_volatile_state_readers(tmp_path):
    for cpu, (khz, gov) in enumerate([(2400000, "schedutil"), (1500000, "schedutil")]):
        write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", f"{khz}\n")
        write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", f"{gov}\n")
    f = machine.cpu_frequencies(tmp_path)
    assert f == {"cpu_mhz": {"cpu0": 2400.0, "cpu1": 1500.0}, "governor": "schedutil"}
    assert machine.cpu_frequencies(tmp_path / "none")["cpu_mhz"] is None
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "51300\n")
    write(tmp_path, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(tmp_path, "sys/class/hwmon/hwmon2/name", "k10temp\n")
    write(tmp_path, "sys/class/hwmon/hwmon2/temp1_input", "48125\n")
    write(tmp_path, "sys/class/hwmon/hwmon2/temp1_label", "Tctl\n")
    assert machine.temperatures(tmp_path) == {"thermal_zone0:cpu-thermal": 51.3, "k10temp:Tctl": 48.125}
    write(tmp_path, "sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count", "3\n")
    assert machine.throttling(tmp_path) == {"core_throttle_count": {"cpu0": 3}}


def test_cpu_share_of_a_sample_shorter_than_a_second():
    # psutil.cpu_times_percent reads a 0.25 s idle sample as 25 % idle; the share must be of the time that passed
    import psutil

    T = type(psutil.cpu_times())
    zero = dict.fromkeys(T._fields, 0.0)
    before = T(**zero | {"user": 10.0, "idle": 100.0})
    idle = machine.times_percent(before, T(**zero | {"user": 10.0, "idle": 100.25}))
    assert idle["idle"] == 100.0 and idle["user"] == 0.0
    half = machine.times_percent(before, T(**zero | {"user": 10.1, "idle": 100.1}))
    assert half["idle"] == 50.0 and half["user"] == 50.0
    assert machine.times_percent(before, before)["idle"] == 0.0  # no time accounted: busy, never idle by default


def test_pi_throttled_flags(tmp_path):
    t = machine.parse_throttled("throttled=0x50005\n")
    assert t["now"] == ["under_voltage", "throttled"]
    assert t["since_boot"] == ["under_voltage_occurred", "throttling_occurred"]
    assert machine.throttling(tmp_path, vcgencmd="throttled=0x0\n") == {"raw": "0x0", "now": [], "since_boot": []}


def test_bench_machine_reads_the_tree_it_is_pointed_at(tb_home, tmp_path):
    import json

    from .conftest import run_bench

    write(tmp_path, "proc/cpuinfo", AARCH64_CPUINFO)
    write(tmp_path, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    proc = run_bench(["machine", "--json", "--no-bandwidth"], tb_home, TRITBENCH_SYSFS_ROOT=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["machine"]["board"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert info["machine"]["cpu_model"] == "Cortex-A76"
    assert info["state"]["cpu_mhz"] is None and info["state"]["cpufreq"].startswith("unavailable:")


def test_bench_machine_prints_what_a_tree_holds_as_plain_text(tb_home, tmp_path):
    from .conftest import run_bench

    hostile = "Evil\x1b]0;pwned\x07 [bold red]CPU[/] [link=http://x]y[/link]"
    write(tmp_path, "proc/cpuinfo", AARCH64_CPUINFO.replace("Features", f"model name\t: {hostile}\nFeatures", 1))
    write(tmp_path, "proc/device-tree/model", "Raspberry Pi 5\x1b[2J\x00")
    proc = run_bench(["machine", "--no-bandwidth"], tb_home, TRITBENCH_SYSFS_ROOT=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "[bold red]CPU[/]" in proc.stdout  # the text as it is, not styled


QEMU_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd03\n" \
               "tritbench-emulator\t: qemu-user -cpu cortex-a53\n"


def test_emulation_is_told_by_the_launcher_or_by_cpuinfo():
    assert machine.emulation(X86_CPUINFO, "x86_64", env={}) is None
    assert machine.emulation(JETSON_CPUINFO, "aarch64", env={}) is None
    launched = machine.emulation("", "aarch64", env={machine.EMULATOR_ENV: "qemu-aarch64-static -cpu max -L /r",
                                                     machine.EMULATED_TARGET_ENV: "armv8.2-a+dotprod+fp16"})
    assert (launched["emulator"], launched["cpu"], launched["target"]) == ("qemu-aarch64-static", "max",
                                                                             "armv8.2-a+dotprod+fp16")
    by_file = machine.emulation(QEMU_CPUINFO, "aarch64", env={})
    assert (by_file["cpu"], by_file["target"]) == ("cortex-a53", "cortex-a53")
    # qemu-user without a sysroot's cpuinfo shows the host's x86 one to an aarch64 process
    leaked = machine.emulation("vendor_id\t: GenuineIntel\nflags\t: fpu avx2\n", "aarch64", env={"QEMU_CPU": "max"})
    assert leaked["cpu"] == "max" and "another architecture" in leaked["detected_by"][0]
    assert machine.emulator_command({machine.EMULATOR_ENV: "qemu-aarch64-static -cpu 'cortex-a76' -L /r s"}) == \
        ["qemu-aarch64-static", "-cpu", "cortex-a76", "-L", "/r", "s"]


def test_an_emulated_core_is_not_the_machine_it_imitates(tmp_path, monkeypatch):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(QEMU_CPUINFO.replace("tritbench-emulator\t: qemu-user -cpu cortex-a53\n",
                                                                ""))
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    monkeypatch.delenv(machine.EMULATOR_ENV, raising=False)
    real = machine.fingerprint(tmp_path)
    assert "emulation" not in real
    (tmp_path / "proc/cpuinfo").write_text(QEMU_CPUINFO)
    emulated = machine.fingerprint(tmp_path)
    assert emulated["cpu_model"] == real["cpu_model"] == "Cortex-A53"
    assert emulated["emulation"]["cpu"] == "cortex-a53" and emulated["id"] != real["id"]
