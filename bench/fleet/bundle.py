"""What a device installs, prepared on the controller: a wheelhouse per (architecture, Python, C library).

Devices need only `python3`: no internet, no pip, no compiler, no venv module. The controller gathers

- binary wheels of the measuring dependencies for the device's platform (`pip download --platform ...`, once per
  platform and requirement set, cached under `<cache>/fleet/deps-*`);
- pip's own wheel, which installs the others on the device (`python3 pip-*.whl/pip install --no-index`);
- llama-cpp-python: PyPI has no binary wheels, so the inventory's `llama_wheel`, or for a device of the
  controller's own platform the wheel `make install` built (pip's cache under ~/.cache/tritbench/pip-*); without
  one the device has no llamacpp backend and the run says so;
- tritbench itself, as a wheel written here with its C libraries compiled for the device's architecture
  (natively, or with `aarch64-linux-gnu-gcc` for aarch64).

The device installs them with `--target` into `<work_dir>/env/<digest>/site` rather than a venv: that works with
any python3 (Debian's needs python3-venv for a venv) and with an emulated interpreter whose venv would link the
host's. The digest is of the wheels' contents, so a second bootstrap with nothing changed finds the folder
installed and does nothing.

Only what a measuring run imports goes to a device (DEVICE_REQUIREMENTS): reports, history stores and SSH stay
on the controller."""

from __future__ import annotations

import base64
import glob
import hashlib
import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tritbench.errors import BenchError
from tritbench.results.history import file_sha256

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# tritbench's dependencies a device needs to measure (the run session, the child, the backends).
DEVICE_REQUIREMENTS = ("numpy", "gguf", "psutil", "tomli", "llama-cpp-python", "onnx", "onnxruntime")
LLAMA = "llama-cpp-python"
REPO = Path(__file__).resolve().parent.parent.parent
# The C libraries in the tritbench wheel: (folder of the Makefile, the library's path inside the package).
C_LIBRARIES = (("backends/onnx/csrc", "tritbench/backends/onnx/lib/libtritbench_ternary.so"),
               ("bench/csrc", "tritbench/lib/libtritbench_stream.so"))
CROSS_CC = {"aarch64": "aarch64-linux-gnu-gcc"}


def cache_root() -> Path:
    """Build artefacts keyed by their contents, like pip's cache: shared by every results home."""
    return Path(os.environ.get("TRITBENCH_FLEET_CACHE") or Path.home() / ".cache" / "tritbench" / "fleet")


@dataclass(frozen=True)
class Target:
    """A device's platform as the probe reported it."""

    arch: str  # x86_64, aarch64
    python: str  # "3.11.2"
    python_tag: str  # cp311
    libc_version: str | None  # glibc "2.36"; None: musl or unknown (only pure wheels then)

    @classmethod
    def from_probe(cls, probe: dict) -> Target:
        return cls(probe["arch"], probe["python"], probe["python_tag"],
                   probe["libc_version"] if probe.get("libc") == "glibc" else None)

    @property
    def short_python(self) -> str:
        return ".".join(self.python.split(".")[:2])

    def platforms(self) -> list[str]:
        """pip's platform tags this device accepts: manylinux for its glibc and older, and plain linux."""
        tags = [f"linux_{self.arch}"]
        if self.libc_version:
            major, minor = (int(x) for x in self.libc_version.split(".")[:2])
            tags += [f"manylinux_{major}_{m}_{self.arch}" for m in range(17, minor + 1)]
            tags += [f"manylinux2014_{self.arch}"]
        return tags

    def key(self) -> str:
        return f"{self.arch}-{self.python_tag}-glibc{self.libc_version or 'none'}"


@dataclass(frozen=True)
class Layer:
    """Wheels installed together into one `--target` folder on the device, named by their digest."""

    name: str  # deps, tritbench
    wheels: list[Path]
    digest: str  # of every wheel's name and sha256 (layer_digest)


def layer_digest(sums: dict[str, str]) -> str:
    """The digest of a layer from its wheels' names and sha256s."""
    return hashlib.sha256("".join(f"{n} {s}\n" for n, s in sorted(sums.items())).encode()).hexdigest()[:20]


@dataclass
class Wheelhouse:
    """Two layers: the dependencies (large, rarely changed) and tritbench (small, changed by every commit), so
    that a new tritbench pushes a few hundred KiB, not the whole stack."""

    pip: Path  # pip's wheel: the device runs it to install the others
    layers: list[Layer]
    notes: list[str] = field(default_factory=list)  # what the device will lack, and why

    @property
    def wheels(self) -> list[Path]:
        return [self.pip, *(w for layer in self.layers for w in layer.wheels)]

    @property
    def digest(self) -> str:
        return "-".join(layer.digest[:8] for layer in self.layers)


def device_requirements(target: Target, llama_wheel: Path | None) -> list[str]:
    """The measuring dependencies pinned to the versions installed here, for the device's Python; with a
    llama.cpp wheel, its own dependencies instead of it (the wheel itself is copied)."""
    env = default_environment()
    env.update(python_version=target.short_python, python_full_version=target.python,
               platform_machine=target.arch, sys_platform="linux", platform_system="Linux")
    wanted = {canonicalize_name(n) for n in DEVICE_REQUIREMENTS}
    reqs = [Requirement(r) for r in md.requires("tritbench") or []]
    if llama_wheel is not None:
        with zipfile.ZipFile(llama_wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            text = zf.read(meta).decode()
        own = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
               if line.startswith("Requires-Dist:")]
        reqs += own
        wanted |= {canonicalize_name(r.name) for r in own}
    out = set()
    for r in reqs:
        name = canonicalize_name(r.name)
        if name not in wanted or name == LLAMA:
            continue
        if r.marker is not None and not r.marker.evaluate({**env, "extra": ""}):
            continue
        try:
            out.add(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            out.add(str(r))
    return sorted(out)


SUMS = "SHA256SUMS"  # written last into a downloaded folder: its wheels' sha256s, so they are hashed once


def _read_sums(folder: Path) -> dict[str, str]:
    return {name: sha for sha, name in (line.split("  ", 1) for line in (folder / SUMS).read_text().splitlines())}


def _download(target: Target, reqs: list[str]) -> Path:
    """Binary wheels of `reqs` and their dependencies for the device's platform (cached by both), with their
    sha256s in SHA256SUMS."""
    key = hashlib.sha256("\n".join([target.key(), *reqs]).encode()).hexdigest()[:16]
    folder = cache_root() / f"deps-{target.key()}-{key}"
    if (folder / SUMS).exists():
        return folder
    tmp = Path(tempfile.mkdtemp(prefix=".deps-", dir=cache_root()))
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--dest", str(tmp),
           "--only-binary=:all:", "--python-version", target.short_python, "--implementation", "cp",
           "--abi", target.python_tag]
    for tag in target.platforms():
        cmd += ["--platform", tag]
    proc = subprocess.run([*cmd, *reqs, f"pip=={md.version('pip')}"], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        last = (proc.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise BenchError(f"cannot gather wheels for {target.key()}: {last}")
    (tmp / SUMS).write_text("".join(f"{file_sha256(w)}  {w.name}\n" for w in sorted(tmp.glob("*.whl"))))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def _cached_llama_wheel(target: Target) -> Path | None:
    """The llama-cpp-python wheel `make install` built, when the device's platform is this machine's."""
    if target.arch != platform.machine() or target.python_tag != f"cp{sys.version_info[0]}{sys.version_info[1]}":
        return None
    try:
        version = md.version(LLAMA)
    except md.PackageNotFoundError:
        return None
    pattern = str(Path.home() / ".cache/tritbench/pip-*/wheels/**/" / f"llama_cpp_python-{version}-*.whl")
    found = sorted(glob.glob(pattern, recursive=True), key=os.path.getmtime)
    return Path(found[-1]) if found else None


def _build_libraries(arch: str, notes: list[str]) -> dict[str, Path]:
    """The C libraries compiled for `arch` (package path -> file), cached by their sources and compiler."""
    native = arch == platform.machine()
    cc = "gcc" if native else CROSS_CC.get(arch)
    if cc is None or shutil.which(cc) is None:
        notes.append(f"no C compiler for {arch} here ({cc or 'none known'}): the onnx backend's op and the "
                     "bandwidth probe's library are not installed (the probe falls back to numpy)")
        return {}
    h = hashlib.sha256(f"{arch} {cc}".encode())
    for csrc, _ in C_LIBRARIES:
        for p in sorted((REPO / csrc).iterdir()):
            if p.is_file():
                h.update(p.name.encode() + p.read_bytes())
    build = cache_root() / f"clib-{arch}-{h.hexdigest()[:16]}"
    out = {pkg_path: build / Path(csrc).parent / "lib" / Path(pkg_path).name for csrc, pkg_path in C_LIBRARIES}
    if all(p.exists() for p in out.values()):
        return out
    for csrc, _ in C_LIBRARIES:
        dest = build / csrc
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(REPO / csrc, dest)
        proc = subprocess.run(["make", "-s", "-C", str(dest), f"CC={cc}"], capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["make failed"])[-1]
            raise BenchError(f"cannot compile {csrc} for {arch} with {cc}: {last}")
    return out


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _package_files() -> dict[str, Path]:
    """Installed path -> source file of every module and data file of the tritbench package (pyproject's
    package-dir mapping: bench/ is `tritbench`, backends/ `tritbench.backends`, ...)."""
    try:
        pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    except OSError:
        raise BenchError(f"a controller runs from tritbench's source tree (`make install`): {REPO} has none") from None
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    files: dict[str, Path] = {}
    for pkg, folder in mapping.items():
        for path in (REPO / folder).rglob("*"):
            rel = path.relative_to(REPO / folder)
            if any(part in ("__pycache__", "csrc", "lib", "obj") for part in rel.parts) or not path.is_file():
                continue
            if path.suffix == ".py" or (pkg == "tritbench" and rel.parts[0] == "suites" and path.suffix == ".toml"):
                files["/".join([*pkg.split("."), *rel.parts])] = path
    return files


def build_tritbench_wheel(arch: str, notes: list[str]) -> Path:
    """tritbench as a wheel for `arch`: its modules, suites, the C libraries compiled for `arch`, and the
    installed distribution's metadata and entry points (the backends are found through them)."""
    dist = md.distribution("tritbench")
    entries: dict[str, bytes] = {inner: src.read_bytes() for inner, src in sorted(_package_files().items())}
    for inner, lib in _build_libraries(arch, notes).items():
        entries[inner] = lib.read_bytes()
    version = dist.version
    info = f"tritbench-{version}.dist-info"
    entries[f"{info}/METADATA"] = (dist.read_text("METADATA") or f"Metadata-Version: 2.1\nName: tritbench\n"
                                   f"Version: {version}\n").encode()
    entries[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    tag = f"py3-none-linux_{arch}"
    entries[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: tritbench\nRoot-Is-Purelib: false\n"
                                f"Tag: {tag}\n").encode()
    digest = hashlib.sha256()
    for name, data in sorted(entries.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    folder = cache_root() / f"tritbench-{arch}-{digest.hexdigest()[:16]}"
    wheel = folder / f"tritbench-{version}-{tag}.whl"
    if wheel.exists():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in sorted(entries.items())]
    record.append(f"{info}/RECORD,,")
    tmp = wheel.with_suffix(".tmp")
    # Fixed timestamps: the same sources give the same bytes, so the device's digest does not change.
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(entries.items()):
            item = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            item.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            zf.writestr(item, data, zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    tmp.rename(wheel)
    return wheel


def wheelhouse(target: Target, llama_wheel: Path | None = None) -> Wheelhouse:
    """Every wheel the device installs, and the digest naming the device's env folder."""
    cache_root().mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    llama = llama_wheel or _cached_llama_wheel(target)
    if llama is None:
        notes.append(f"no llama-cpp-python wheel for {target.arch}/{target.python_tag} (PyPI has none; give "
                     "the host a `llama_wheel`): the llamacpp backend is not installed there")
    deps = _download(target, device_requirements(target, llama))
    sums = _read_sums(deps)
    pip = deps / next(n for n in sums if n.startswith("pip-"))
    sums.pop(pip.name)
    wheels = [deps / n for n in sorted(sums)]
    if llama is not None:
        wheels.append(llama)
        sums[llama.name] = file_sha256(llama)
    own = build_tritbench_wheel(target.arch, notes)
    return Wheelhouse(pip, [Layer("deps", wheels, layer_digest(sums)),
                            Layer("tritbench", [own], layer_digest({own.name: file_sha256(own)}))], notes)
