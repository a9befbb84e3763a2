#!/usr/bin/env bash
# llama.cpp on aarch64 cores from this x86 machine: the llama.cpp that .venv's llama-cpp-python vendors,
# cross-compiled per target core, and tritbench run under qemu-user as that core (correctness only:
# emulated speed means nothing, and every record run this way says so).
#
#   .ci/arm-llama.sh targets                 the targets, one a line: name, compiler flag, qemu -cpu
#   .ci/arm-llama.sh build [TARGET...]       cross-build the shared libraries (default: every target);
#                                            prints one library folder per target
#   .ci/arm-llama.sh site                    the aarch64 site: tritbench's pure-Python dependencies and
#                                            llama-cpp-python's Python side; prints its folder
#   .ci/arm-llama.sh run TARGET ARGS...      `python3 ARGS` in the aarch64 sysroot under qemu as TARGET's
#                                            core, with LLAMA_CPP_LIB_PATH at TARGET's libraries
#
# Everything is cached under $TRITBENCH_ARM_CACHE (default ~/.cache/tritbench/arm-llama), keyed by the
# llama-cpp-python version and the flags: a second call does nothing. The sysroot comes from
# .ci/arm-sysroot.sh ($TRITBENCH_ARM_SYSROOT, default ~/.cache/tritbench/arm64). Exit 2: bad input.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${TRITBENCH_ARM_CACHE:-$HOME/.cache/tritbench/arm-llama}
sysroot_dir=${TRITBENCH_ARM_SYSROOT:-$HOME/.cache/tritbench/arm64}
python=${PYTHON:-$repo/.venv/bin/python}
# Bump when the build recipe below changes, so cached libraries built the old way are not reused.
recipe=2

# name | compiler flag | qemu -cpu | MIDR implementer:part | /proc/cpuinfo Features: what qemu 7.2's core reports
# (MIDR_EL1, AT_HWCAP and AT_HWCAP2, read under qemu with a small aarch64 program)
# qemu 7.2 (Debian 12) has no Cortex-A78AE: Neoverse-N1 has the same Armv8.2 features (dotprod, fp16, rcpc),
# so a build that needed more would fault there. The generic build runs on qemu's Cortex-A76, which has exactly
# those features (qemu's `max` would accept anything, and its MIDR, implementer 0, crashes onnxruntime's CPU
# detection).
targets() {
  cat <<'T'
cortex-a53|-mcpu=cortex-a53|cortex-a53|0x41:0xd03|fp asimd aes pmull sha1 sha2 crc32 cpuid
cortex-a76|-mcpu=cortex-a76|cortex-a76|0x41:0xd0b|fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
cortex-a78ae|-mcpu=cortex-a78ae|neoverse-n1|0x41:0xd0c|fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
armv8.2-a+dotprod+fp16|-march=armv8.2-a+dotprod+fp16|cortex-a76|0x41:0xd0b|fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
T
}

die() { echo "arm-llama.sh: error: $1" >&2; exit "${2:-1}"; }

target_line() {
  local line
  line=$(targets | grep -F "$1|" | head -1 || true)
  [ -n "$line" ] && [ "${line%%|*}" = "$1" ] || \
    die "unknown target '$1' (known: $(targets | cut -d'|' -f1 | paste -sd' ' | sed 's/ /, /g'))" 2
  echo "$line"
}

need_tools() {
  local missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local pkgs
  pkgs=$(printf '%s\n' "${missing[@]}" | sed -e 's/^aarch64-linux-gnu-gcc$/gcc-aarch64-linux-gnu/' \
    -e 's/^aarch64-linux-gnu-g++$/g++-aarch64-linux-gnu/' -e 's/^qemu-aarch64-static$/qemu-user-static/' | sort -u)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    die "missing ${missing[*]}: apt-get install $(echo $pkgs)"
  fi
}

version() {
  [ -n "${LLAMA_CPP_PYTHON_VERSION:-}" ] && { echo "$LLAMA_CPP_PYTHON_VERSION"; return; }
  "$python" -c 'from importlib.metadata import version; print(version("llama-cpp-python"))' 2>/dev/null || \
    die "no llama-cpp-python in $python (run make install, or set LLAMA_CPP_PYTHON_VERSION)"
}

# The source distribution, downloaded once per version (PyPI has only the sdist).
sdist() {
  local ver=$1 dir="$cache/sdist"
  local file="$dir/llama_cpp_python-$ver.tar.gz"
  if [ ! -f "$file" ]; then
    mkdir -p "$dir"
    "$python" -m pip download -q --no-binary :all: --no-deps --dest "$dir" "llama-cpp-python==$ver" >&2
  fi
  echo "$file"
}

toolchain_file() {
  local file="$cache/aarch64-toolchain.cmake"
  [ -f "$file" ] || cat > "$file" <<'CMAKE'
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
CMAKE
  echo "$file"
}

# The CMake arguments of every target: those of `make install` (no multimodal library), Release as
# scikit-build-core builds it, no -march=native (the build machine is not the target).
common_args() {
  echo "-DCMAKE_BUILD_TYPE=Release -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF"
}

# Cross-build llama-cpp-python's CMake project with compiler flag $3 (may be empty), building only the CMake
# targets given (never tools, tests or examples); the libraries land in $4. Prints the seconds it took.
cross_build() {
  local ver=$1 what=$2 flag=$3 dest=$4; shift 4
  local tmp t0
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/arm-llama-XXXXXX")
  trap 'rm -rf "${tmp:-}"' EXIT  # on failure; on success it goes below
  tar xzf "$(sdist "$ver")" -C "$tmp"
  t0=$(date +%s)
  cmake -S "$tmp/llama_cpp_python-$ver" -B "$tmp/build" -DCMAKE_TOOLCHAIN_FILE="$(toolchain_file)" \
    $(common_args) -DCMAKE_C_FLAGS="$flag" -DCMAKE_CXX_FLAGS="$flag" >"$tmp/configure.log" 2>&1 || {
      tail -20 "$tmp/configure.log" >&2; die "configuring llama.cpp ($what) failed"; }
  cmake --build "$tmp/build" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" --target "$@" >"$tmp/build.log" 2>&1 || {
      grep -m5 -i error "$tmp/build.log" >&2; die "building llama.cpp ($what) failed"; }
  rm -rf "$dest" && mkdir -p "$dest"
  cp -a "$tmp"/build/bin/lib*.so* "$dest/"
  rm -rf "$tmp"
  echo $(($(date +%s) - t0))
}

# libllama and libggml (the graph code, no kernels): built once per version with no CPU flag (baseline
# Armv8-A) and shared by every target, as a native build shares them: GGML_NATIVE gives -mcpu=native to
# ggml's CPU backend only.
build_common() {
  local ver=$1 key out secs
  key=$(echo "$recipe $ver $(common_args) $(aarch64-linux-gnu-gcc -dumpfullversion)" | cksum | cut -d' ' -f1)
  out="$cache/llama-$ver/common-$key"
  if [ ! -f "$out/.done" ]; then
    secs=$(cross_build "$ver" "libllama, baseline Armv8-A" "" "$out.tmp" llama)
    echo "$secs" > "$out.tmp/.done"
    rm -rf "$out" && mv "$out.tmp" "$out"
    echo "built libllama (baseline Armv8-A) in $secs s" >&2
  fi
  echo "$out"
}

# One target: ggml's CPU backend (every kernel the flag changes) and ggml-base with the target's flag, beside
# the shared libllama and libggml (hard links).
build_one() {
  local name=$1 ver=$2 line flag key out common secs
  line=$(target_line "$name")
  flag=$(echo "$line" | cut -d'|' -f2)
  key=$(echo "$recipe $ver $(common_args) $flag $(aarch64-linux-gnu-gcc -dumpfullversion)" | cksum | cut -d' ' -f1)
  out="$cache/llama-$ver/$name-$key"
  if [ -f "$out/build.json" ]; then echo "$out"; return; fi
  common=$(build_common "$ver")
  secs=$(cross_build "$ver" "$name" "$flag" "$out.tmp" ggml-cpu)
  rm -f "$out.tmp"/libllama.so* "$out.tmp"/libggml.so*
  cp -al "$common"/libllama.so* "$common"/libggml.so* "$out.tmp/"
  # ggml uses OpenMP, and the minimal sysroot has no libgomp: ship the cross toolchain's beside the libraries
  # (their RUNPATH is $ORIGIN, as in the wheel).
  cp -L "$(aarch64-linux-gnu-gcc -print-file-name=libgomp.so.1)" "$out.tmp/"
  cat > "$out.tmp/build.json" <<JSON
{"target": "$name", "flags": "$flag", "flags_apply_to": "libggml-cpu, libggml-base (libllama, libggml: baseline Armv8-A, shared by every target)",
 "cmake_args": "$(common_args)", "llama_cpp_python": "$ver", "cross_compiled": true,
 "compiler": "aarch64-linux-gnu-gcc $(aarch64-linux-gnu-gcc -dumpfullversion)",
 "build_seconds": {"ggml_cpu": $secs, "libllama_shared": $(cat "$common/.done")}, "jobs": ${CMAKE_BUILD_PARALLEL_LEVEL:-2}, "recipe": $recipe}
JSON
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "built $name's ggml-cpu in $secs s" >&2
  echo "$out"
}

cmd_build() {
  need_tools aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ cmake
  local ver names=("$@")
  [ ${#names[@]} -gt 0 ] || mapfile -t names < <(targets | cut -d'|' -f1)
  for name in "${names[@]}"; do target_line "$name" >/dev/null; done  # bad input before any work
  ver=$(version)
  for name in "${names[@]}"; do build_one "$name" "$ver"; done
}

sysroot() {
  "$repo/.ci/arm-sysroot.sh" "$sysroot_dir" >/dev/null
  echo "$sysroot_dir"
}

# pip for the sysroot's Python: aarch64 wheels only (pip expands manylinux_2_36 to every older glibc tag).
guest_pip() {
  local pyver=$1; shift
  "$python" -m pip install -q --only-binary=:all: --python-version "$pyver" --implementation cp \
    --abi "cp${pyver/./}" --platform manylinux_2_36_aarch64 --platform manylinux2014_aarch64 "$@" >&2
}

# tritbench's own dependencies (pyproject's list, read here so that a new one is not forgotten) and
# llama-cpp-python's Python side, beside the sysroot's site (numpy, onnxruntime, onnx come from there).
# llama-cpp-python is an sdist whose build runs CMake with this machine's compiler, and pip will not
# install an sdist for another platform: its `llama_cpp` package is pure Python over ctypes, so its files
# are copied from the sdist, with a dist-info so that importlib.metadata reports its version.
cmd_site() {
  local ver root pyver site stamp
  ver=$(version)
  root=$(sysroot)
  pyver=$(ls "$root/sysroot/usr/bin" | grep -oE '^python3\.[0-9]+$' | head -1); pyver=${pyver#python}
  local deps
  deps=$("$python" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
skip = {"llama-cpp-python", "numpy", "onnx", "onnxruntime", "tomli"}  # the last four: the sysroot's site
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print(" ".join(d.split(";")[0].replace(" ", "") for d in deps
               if d.split(";")[0].split(">")[0].split("=")[0].split("[")[0].strip() not in skip))
PY
)
  site="$cache/site-py$pyver-llama-$ver-$(echo "$deps" | cksum | cut -d' ' -f1)"
  [ -f "$site/.done" ] && { echo "$site"; return; }
  rm -rf "$site" && mkdir -p "$site"
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/arm-site-XXXXXX")
  trap 'rm -rf "${tmp:-}"' EXIT
  tar xzf "$(sdist "$ver")" -C "$tmp" "llama_cpp_python-$ver/llama_cpp" "llama_cpp_python-$ver/pyproject.toml"
  local llama_deps
  llama_deps=$("$python" -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$tmp/llama_cpp_python-$ver/pyproject.toml")
  # shellcheck disable=SC2086  # word splitting wanted: one requirement a word
  guest_pip "$pyver" --target "$site" $deps $llama_deps
  rm -rf "$site"/numpy "$site"/numpy-*.dist-info "$site"/numpy.libs  # the sysroot's site has numpy
  cp -r "$tmp/llama_cpp_python-$ver/llama_cpp" "$site/"
  mkdir -p "$site/llama_cpp_python-$ver.dist-info"
  printf 'Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: %s\n' "$ver" \
    > "$site/llama_cpp_python-$ver.dist-info/METADATA"
  echo "tritbench .ci/arm-llama.sh (Python files of the sdist; libraries cross-built)" \
    > "$site/llama_cpp_python-$ver.dist-info/INSTALLER"
  touch "$site/.done"
  rm -rf "$tmp"
  echo "$site"
}

# A root for qemu's -L per emulated core: the sysroot's system folders linked in, and a /proc/cpuinfo of that core
# (qemu-user 7.2 shows the guest the host's x86 one, on which onnxruntime's cpuinfo crashes). The extra
# `tritbench-emulator` line lets tritbench tell this file from a real kernel's.
core_root() {
  local root=$1 cpu=$2 midr=$3 features=$4
  local dir
  dir="$cache/roots/$cpu-$(echo "$root $midr $features" | cksum | cut -d' ' -f1)"
  if [ ! -f "$dir/proc/cpuinfo" ]; then
    rm -rf "$dir" && mkdir -p "$dir/proc"
    # Only the system's own folders: with /root, /home or /tmp linked too, qemu would show the guest the
    # sysroot's empty ones in place of the host's (where the repository, the caches and the models are).
    for entry in bin etc lib lib64 sbin usr var; do
      if [ -e "$root/sysroot/$entry" ]; then ln -s "$root/sysroot/$entry" "$dir/$entry"; fi
    done
    cat > "$dir/proc/cpuinfo.tmp" <<CPU
processor	: 0
BogoMIPS	: 50.00
Features	: $features
CPU implementer	: ${midr%%:*}
CPU architecture: 8
CPU variant	: 0x0
CPU part	: ${midr##*:}
CPU revision	: 0
tritbench-emulator	: qemu-user -cpu $cpu

CPU
    mv "$dir/proc/cpuinfo.tmp" "$dir/proc/cpuinfo"
  fi
  echo "$dir"
}

# The `tritbench` namespace as pyproject's package-dir maps it, from symlinks (the guest has no editable
# install): tritbench/ holds bench/'s entries plus backends/, models/, reports/.
namespace_tree() {
  local tree
  tree="$cache/tree-$(echo "$repo" | cksum | cut -d' ' -f1)"
  if [ ! -d "$tree/tritbench" ]; then
    rm -rf "$tree.tmp" && mkdir -p "$tree.tmp/tritbench"
    for entry in "$repo"/bench/*; do ln -s "$entry" "$tree.tmp/tritbench/$(basename "$entry")"; done
    for sub in backends models reports; do ln -s "$repo/$sub" "$tree.tmp/tritbench/$sub"; done
    rm -rf "$tree" && mv "$tree.tmp" "$tree"
  fi
  echo "$tree"
}

# The onnx backend's custom op for aarch64 (its NEON path; the C files decide it from the compiler's target),
# keyed by the sources: a few seconds.
onnx_op() {
  local csrc="$repo/backends/onnx/csrc" out
  out="$cache/onnx-op-$(cat "$csrc"/*.c "$csrc"/*.h "$csrc"/Makefile | cksum | cut -d' ' -f1)"
  if [ ! -f "$out/libtritbench_ternary.so" ]; then
    make -s -C "$csrc" CC=aarch64-linux-gnu-gcc OUT="$out.tmp" >&2
    rm -rf "$out" && mv "$out.tmp" "$out"
  fi
  echo "$out/libtritbench_ternary.so"
}

cmd_run() {
  local name=${1:-}
  [ -n "$name" ] || die "usage: arm-llama.sh run TARGET ARGS..." 2
  shift
  local line cpu midr features
  line=$(target_line "$name")
  IFS='|' read -r _ _ cpu midr features <<<"$line"
  need_tools qemu-aarch64-static
  local lib site root core tree python3
  lib=$(cmd_build "$name")
  site=$(cmd_site)
  root=$(sysroot)
  core=$(core_root "$root" "$cpu" "$midr" "$features")
  tree=$(namespace_tree)
  python3=$(ls "$core/usr/bin/" | grep -E '^python3\.[0-9]+$' | head -1)
  # TRITBENCH_EMULATOR: how tritbench starts its measuring children (an aarch64 program cannot exec another
  # without binfmt_misc), and what every record says ran it; TRITBENCH_EMULATED_TARGET: the build target.
  export TRITBENCH_EMULATOR="qemu-aarch64-static -cpu $cpu -L $core"
  export TRITBENCH_EMULATED_TARGET=$name
  export LLAMA_CPP_LIB_PATH=$lib
  TRITBENCH_ONNX_LIB=$(onnx_op)
  export TRITBENCH_ONNX_LIB
  export PYTHONPATH="$tree:$root/site:$site"
  exec qemu-aarch64-static -cpu "$cpu" -L "$core" "$core/usr/bin/$python3" "$@"
}

case "${1:-}" in
  targets) targets | cut -d'|' -f1-3 | tr '|' ' ' ;;
  build) shift; cmd_build "$@" ;;
  site) cmd_site ;;
  run) shift; cmd_run "$@" ;;
  *) die "usage: arm-llama.sh targets | build [TARGET...] | site | run TARGET ARGS..." 2 ;;
esac
