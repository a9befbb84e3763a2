"""Where the native custom-op library lives, whether it is up to date, and how to build it (no onnx import)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
LIB_PATH = Path(__file__).resolve().parent / "lib" / "libtritbench_ternary.so"
BUILD_COMMAND = "make -C backends/onnx/csrc"
LIB_ENV = "TRITBENCH_ONNX_LIB"


class LibraryNotBuiltError(RuntimeError):
    """The custom-op library is missing or older than its C sources."""


def library_path() -> Path:
    """Path of the built custom-op library; raises LibraryNotBuiltError when it is missing or stale.
    TRITBENCH_ONNX_LIB names another build (an aarch64 one, under qemu: .ci/arm-llama.sh)."""
    if os.environ.get(LIB_ENV):
        return Path(os.environ[LIB_ENV])
    if not LIB_PATH.exists():
        raise LibraryNotBuiltError(f"{LIB_PATH} is missing: build it with `{BUILD_COMMAND}` (from the repo root)")
    if not CSRC_DIR.is_dir():  # installed from a wheel (a remote host's bundle): no sources to be older than
        return LIB_PATH
    sources = [p for p in CSRC_DIR.iterdir() if p.suffix in (".c", ".h") or p.name == "Makefile"]
    newest = max(sources, key=lambda p: p.stat().st_mtime)
    if newest.stat().st_mtime > LIB_PATH.stat().st_mtime:
        raise LibraryNotBuiltError(
            f"{LIB_PATH} is older than {newest.name}: rebuild it with `{BUILD_COMMAND}` (from the repo root)"
        )
    return LIB_PATH


def ensure_built() -> Path:
    """Path of an up-to-date libtritbench_ternary.so, running `make -C backends/onnx/csrc` if needed."""
    try:
        return library_path()
    except LibraryNotBuiltError:
        pass
    proc = subprocess.run(["make", "-C", str(CSRC_DIR)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LibraryNotBuiltError(f"`{BUILD_COMMAND}` failed:\n{proc.stdout}\n{proc.stderr}")
    return library_path()
