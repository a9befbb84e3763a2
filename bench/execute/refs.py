"""A gate's `ref=` sides: one git revision of a tritbench checkout, installed in its own environment.

Each revision is exported (`git archive`, so the checkout itself is never touched) into
<cache>/<commit>-<machine key>/src (cache: $TRITBENCH_HOME/gate, else ~/.cache/tritbench/gate), installed in
editable mode into a venv next to it, and its C libraries (the ternary op, the bandwidth probe) are built
there for this CPU. The venv sees the harness's
own site-packages through a .pth line, so a revision with the same dependencies installs in seconds; pip
installs into the side's venv only what the revision needs and the harness lacks. Builds are cached by
commit and CPU: a second gate of the same revisions starts at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from tritbench import machine
from tritbench.errors import BenchError, ConfigError

READY = "ready"
# The C libraries a revision's children load, built by their own Makefiles (where the revision has them).
C_LIBRARIES = ("backends/onnx/csrc", "bench/csrc")
BUILD_TIMEOUT_S = 1800


def cache_root() -> Path:
    """$TRITBENCH_HOME/gate, else ~/.cache/tritbench/gate (next to the synthesized models)."""
    home = os.environ.get("TRITBENCH_HOME")
    return Path(home) / "gate" if home else Path.home() / ".cache" / "tritbench" / "gate"


def commit_of(repo: Path, ref: str) -> str:
    """The full commit id `ref` names in `repo`; ConfigError if there is none."""
    try:
        proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"--ab ref: cannot run git in {repo}: {exc}") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ConfigError(f"--ab ref: '{ref}' is not a commit in {repo}")
    return proc.stdout.strip()


def machine_key() -> str:
    """Builds use this CPU's instruction sets and this Python: a cache entry is only reused by their like."""
    fp = machine.fingerprint()
    text = "|".join([sys.version, platform.machine(), ",".join(fp.get("isa") or [])])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _run(cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> None:
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"{cmd[0]} failed: {exc} (log: {log})") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        telling = [ln for ln in lines if "error" in ln.lower()] or lines or [""]
        raise BenchError(f"building the revision failed at `{' '.join(cmd[:4])}`: {telling[-1][:300]} (log: {log})")


def _harness_site_packages() -> list[str]:
    return [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]


def prepare_ref(repo: Path, ref: str, cache: Path | None = None) -> str:
    """The interpreter of an environment running revision `ref` of the tritbench checkout `repo`."""
    commit = commit_of(repo, ref)
    home = (cache or cache_root()) / f"{commit[:16]}-{machine_key()}"
    python = home / "venv" / "bin" / "python"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two gates building one revision: the second waits, then reuses it
        if (home / READY).exists() and python.exists():
            return str(python)
        shutil.rmtree(home / "src", ignore_errors=True)  # a build that died half-way starts over
        shutil.rmtree(home / "venv", ignore_errors=True)
        (home / "build.log").unlink(missing_ok=True)
        _build(repo, commit, home)
        (home / READY).write_text(commit + "\n")
    return str(python)


def _build(repo: Path, commit: str, home: Path) -> None:
    log, src, venv = home / "build.log", home / "src", home / "venv"
    src.mkdir()
    archive = home / "src.tar"
    _run(["git", "-C", str(repo.resolve()), "archive", "--format=tar", "-o", str(archive), commit], home, log)
    _run(["tar", "-xf", str(archive), "-C", str(src)], home, log)
    archive.unlink()
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], home, log)  # pip: the harness's, via the .pth
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", where], capture_output=True, text=True,
                             check=True).stdout.strip()
    # The harness's packages, after the side's own on sys.path: a plain path line, so the harness's own
    # editable-install hook (a .pth in its site-packages) is not run and `tritbench` is the revision's.
    Path(purelib, "zz-tritbench-harness.pth").write_text("\n".join(_harness_site_packages()) + "\n")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--cache-dir", str(home.parent / "pip"),
          "-e", str(src)], home, log)
    for folder in C_LIBRARIES:
        if (src / folder / "Makefile").is_file():
            _run(["make", "-C", str(src / folder)], home, log)
