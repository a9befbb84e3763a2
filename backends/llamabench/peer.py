"""A llama.cpp-family build the user made: its tools, its command lines, and what it prints.

Everything that reads a tool's output takes the text as a parameter, so tests feed it recorded output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tritbench.plugin import ConfigError

# Beside llama-bench, the binaries that print greedy tokens deterministically, best first: llama-simple
# takes `-m MODEL -n N PROMPT` and prints the prompt then each greedy token's piece on stdout.
GREEDY_TOOLS = ("llama-simple",)
QUANTIZE_TOOL = "llama-quantize"
HELP_TIMEOUT_S = 30


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def executable(path: str | os.PathLike, what: str) -> Path:
    """`path` as an absolute Path if it is an executable file, else ConfigError saying what is wrong."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{what} not found: {p}")
    if not p.is_file():
        raise ConfigError(f"{what} is not a file: {p}")
    if not os.access(p, os.X_OK):
        raise ConfigError(f"{what} is not executable: {p} (chmod +x)")
    return p.resolve()


def tool_help(path: Path) -> str:
    """What `TOOL --help` prints (stdout and stderr: versions differ in which they use)."""
    try:
        proc = subprocess.run([str(path), "--help"], capture_output=True, text=True, errors="replace",
                              timeout=HELP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except OSError as exc:  # not a program this machine can run (wrong architecture, a script without #!)
        raise ConfigError(f"{path} cannot be run: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{path} --help did not finish in {HELP_TIMEOUT_S} s: not a llama-bench") from None
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class BenchFeatures:
    """What a llama-bench build's --help says it accepts (builds from 2024 lack depth and --no-warmup)."""

    depth: bool
    no_warmup: bool
    jsonl: bool


def bench_features(help_text: str) -> BenchFeatures:
    """The features of a llama-bench from its --help text; ConfigError if the text is not llama-bench's."""
    if "--n-prompt" not in help_text or "--n-gen" not in help_text or "json" not in help_text:
        first = next((ln.strip() for ln in help_text.splitlines() if ln.strip()), "no output")
        raise ConfigError(f"not a llama-bench with JSON output (its --help says: {first[:120]})")
    return BenchFeatures(depth="--n-depth" in help_text, no_warmup="--no-warmup" in help_text,
                         jsonl="jsonl" in help_text)


def check_bench(path: str | os.PathLike) -> tuple[Path, BenchFeatures]:
    """The llama-bench at `path`, checked before any case runs."""
    p = executable(path, "llama-bench binary (bin)")
    return p, bench_features(tool_help(p))


def sibling(bench: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` beside llama-bench that is an executable file (a build puts its tools in one
    folder), or None."""
    for name in names:
        p = bench.parent / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def quantize_types(help_text: str) -> dict[str, int]:
    """Type name (upper case) -> file-type id, from llama-quantize's usage (`  37  or  TQ2_0   :  ...`)."""
    return {m.group(2).upper(): int(m.group(1))
            for m in re.finditer(r"^\s*(\d+)\s+or\s+([A-Za-z0-9_]+)\s*:", help_text, re.MULTILINE)}


def bench_command(bench: Path, model: Path, n_prompt: int, n_gen: int, depth: int, n_threads: int, reps: int,
                  options: dict, features: BenchFeatures, warmup: bool) -> list[str]:
    """One llama-bench test: pp (n_gen 0) or tg (n_prompt 0), every setting given explicitly so that
    every peer runs the same batches (never `-b 1`, which turns prefill into one token at a time)."""
    cmd = [str(bench), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "-t", str(n_threads),
           "-r", str(reps), "-b", str(options["n_batch"]), "-ub", str(options["n_ubatch"]), "-o", "json"]
    if depth:
        if not features.depth:
            raise ConfigError(f"{bench} has no --n-depth: depth {depth} cannot be run with this build")
        cmd += ["-d", str(depth)]
    if not warmup and features.no_warmup:
        cmd.append("--no-warmup")
    return cmd


def parse_bench_output(text: str) -> list[dict]:
    """The tests llama-bench printed with `-o json` (one array) or `-o jsonl` (one object a line);
    ValueError naming the first line if it is neither."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("llama-bench printed nothing on stdout")
    try:
        data = json.loads(stripped)
        tests = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        try:
            tests = [json.loads(ln) for ln in stripped.splitlines() if ln.strip()]
        except json.JSONDecodeError:
            first = stripped.splitlines()[0][:120]
            raise ValueError(f"llama-bench output is not JSON: {first!r}") from None
    for t in tests:
        if not isinstance(t, dict) or "n_prompt" not in t or "n_gen" not in t:
            raise ValueError(f"llama-bench JSON without n_prompt/n_gen: {json.dumps(t)[:120]}")
        if not isinstance(t.get("samples_ns"), list) or not t["samples_ns"]:
            raise ValueError("this llama-bench reports no per-repetition samples (samples_ns): too old a build")
    return tests


def telling_line(stderr: str) -> str:
    """The line of a failed tool's stderr that says most about why (an error or assertion, else the last)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for keys in (("GGML_ASSERT", "Assertion"), ("error", "Error", "failed", "abort", "Segmentation")):
        hits = [ln for ln in lines if any(k in ln for k in keys)]
        if hits:
            return hits[0][:300]
    return lines[-1][:300] if lines else "no output on stderr"


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def run_tool(cmd: list[str], timeout: float | None = None) -> str:
    """Run a peer tool; its stdout, or RuntimeError with how it ended and its telling stderr line."""
    return run_measured(cmd, timeout)[0]


PEAK_POLL_S = 0.05  # the longest pause between readings: they start at 1 ms and double, for short-lived runs


def status_peak_bytes(status: Path) -> int | None:
    """VmHWM (bytes) of a /proc/<pid>/status file, None once the process is gone or without /proc."""
    try:
        for line in status.read_text(errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_measured(cmd: list[str], timeout: float | None = None) -> tuple[str, dict]:
    """`run_tool`, plus what the process used over its whole life (model load and warmup included): its peak RSS
    (VmHWM, read while it runs: wait4's ru_maxrss starts at the spawning process's own high-water mark) and its
    CPU seconds (wait4)."""
    import tempfile
    import threading

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        status_file, peak, pause = Path(f"/proc/{proc.pid}/status"), None, 0.001
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                # VmHWM only grows: the last reading before exit is the peak (it holds the mapped model from load on)
                peak = max(filter(None, (status_peak_bytes(status_file), peak)), default=None)
                time.sleep(pause)
                pause = min(2 * pause, PEAK_POLL_S)
        finally:
            if timer:
                timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        stdout, stderr = (f.read().decode(errors="replace") for f in (out, err))
    if expired.is_set():
        raise RuntimeError(f"{Path(cmd[0]).name} did not finish in {timeout:g} s")
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} {describe_exit(proc.returncode)}: {telling_line(stderr)}")
    if peak is None:  # ended before a reading (or no /proc): an upper bound, from the parent's mark up
        return stdout, {"peak_rss_bytes": usage.ru_maxrss * 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
                        "source": "wait4 ru_maxrss of the peer process (an upper bound: it starts at the "
                                  "spawning process's own peak)"}
    return stdout, {"peak_rss_bytes": peak, "cpu_s": usage.ru_utime + usage.ru_stime,
                    "source": f"VmHWM of the peer process, read while it ran (at least every {PEAK_POLL_S:g} s)"}
