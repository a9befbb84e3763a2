#!/usr/bin/env bash
# A real llama-bench (and llama-quantize, llama-simple) for the tests of the `llama-bench` peer backend,
# built from the llama.cpp sources that .venv's llama-cpp-python vendors. tritbench never builds peer
# engines for its users (the README says how to point at one): this is the test suite's own copy.
#
#   .ci/llama-bench.sh build     build once (cached) and print the folder holding the binaries
#   .ci/llama-bench.sh key       print the cache folder a build would use (no work)
#
# Only the three tools' own sources are compiled (about a minute on 2 cores): they link against the
# libraries the installed llama-cpp-python wheel ships (libllama, libllama-common, libggml*, from the same
# sources and built with the same CPU flags), which are copied beside the binaries (RUNPATH $ORIGIN), so
# the folder keeps working if the venv goes. A full CMake build would compile libllama and ggml again
# (5.5 min of the wheel's own build on 2 busy cores) plus llama-common. Cached under $TRITBENCH_LLAMA_BENCH_CACHE (default
# ~/.cache/tritbench/llama-bench)/<version>-<key>, the key covering the recipe, the wheel's libraries and
# the compiler: a second call does nothing. Exit 2: bad input; 3: a tool is missing (the line says which
# package installs it).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${TRITBENCH_LLAMA_BENCH_CACHE:-$HOME/.cache/tritbench/llama-bench}
python=${PYTHON:-$repo/.venv/bin/python}
cxx=${CXX:-g++}
# Bump when the recipe below changes, so binaries built the old way are not reused.
recipe=2

die() { echo "llama-bench.sh: error: $1" >&2; exit "${2:-1}"; }

need_tools() {
  local missing=() pkgs=()
  command -v "$cxx" >/dev/null || { missing+=("$cxx"); pkgs+=(g++); }
  command -v tar >/dev/null || { missing+=(tar); pkgs+=(tar); }
  [ -x "$python" ] || die "no Python at $python (run make install, or set PYTHON)" 3
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: apt-get install ${pkgs[*]}" 3
}

# The installed llama-cpp-python: its version and the folder of the shared libraries its wheel installed
# (site-packages/lib holds libllama-common beside copies of libllama and libggml*).
wheel() {
  "$python" - <<'PY' || die "no llama-cpp-python in $python (run make install)" 3
import os, sys
from importlib.metadata import distribution
dist = distribution("llama-cpp-python")
libs = {os.path.dirname(str(dist.locate_file(f))) for f in dist.files or ()
        if os.path.basename(str(f)).startswith("libllama-common.so")}
if not libs:
    sys.exit("llama-cpp-python ships no libllama-common")
print(dist.version)
print(sorted(libs)[0])
PY
}

# The source distribution, downloaded once per version (PyPI has only the sdist); .ci/arm-llama.sh's copy
# is used if it is there.
sdist() {
  local ver=$1 dir="$cache/sdist" file
  file="$dir/llama_cpp_python-$ver.tar.gz"
  for f in "$file" "$HOME/.cache/tritbench/arm-llama/sdist/llama_cpp_python-$ver.tar.gz"; do
    [ -f "$f" ] && { echo "$f"; return; }
  done
  mkdir -p "$dir"
  "$python" -m pip download -q --no-binary :all: --no-deps --dest "$dir" "llama-cpp-python==$ver" >&2
  echo "$file"
}

key_of() {
  local ver=$1 libdir=$2
  echo "$recipe $ver $(cd "$libdir" && cat libllama.so libllama-common.so libggml*.so | cksum) $("$cxx" -dumpfullversion)" \
    | cksum | cut -d' ' -f1
}

cmd_key() {
  need_tools
  local info ver libdir
  info=$(wheel); ver=$(sed -n 1p <<<"$info"); libdir=$(sed -n 2p <<<"$info")
  echo "$cache/$ver-$(key_of "$ver" "$libdir")"
}

cmd_build() {
  need_tools
  local info ver libdir out tmp src t0 secs
  info=$(wheel); ver=$(sed -n 1p <<<"$info"); libdir=$(sed -n 2p <<<"$info")
  out="$cache/$ver-$(key_of "$ver" "$libdir")"
  if [ -f "$out/build.json" ]; then echo "$out"; return; fi
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/llama-bench-XXXXXX")
  trap 'rm -rf "${tmp:-}"' EXIT
  t0=$(date +%s)
  src="$tmp/llama_cpp_python-$ver/vendor/llama.cpp"
  # the git metadata too: the build commit the tools report comes from the vendored submodule
  tar xzf "$(sdist "$ver")" -C "$tmp" "llama_cpp_python-$ver/vendor/llama.cpp" "llama_cpp_python-$ver/.git"
  mkdir -p "$tmp/out"
  cp -a "$libdir"/libllama.so* "$libdir"/libllama-common.so* "$libdir"/libggml*.so* "$tmp/out/"
  local inc=(-I"$src/include" -I"$src/ggml/include" -I"$src/common" -I"$src/vendor")
  local flags=(-O3 -DNDEBUG -std=c++17 -pthread "${inc[@]}")
  # an old-style RPATH: unlike RUNPATH it also finds the libraries' own dependencies (the wheel's
  # libllama-common has no RUNPATH of its own)
  local link=(-L"$tmp/out" -lllama-common -lllama -lggml -lggml-base -Wl,--disable-new-dtags,-rpath,'$ORIGIN')
  # three compilers at most, two at a time (CMAKE_BUILD_PARALLEL_LEVEL, as the wheel's build)
  local jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2} pids=() names=(llama-bench llama-quantize llama-simple)
  local -A sources=(
    [llama-bench]="$src/tools/llama-bench/llama-bench.cpp $src/tools/llama-bench/main.cpp"
    [llama-quantize]="$src/tools/quantize/quantize.cpp $src/tools/quantize/main.cpp"
    [llama-simple]="$src/examples/simple/simple.cpp"
  )
  for name in "${names[@]}"; do
    # shellcheck disable=SC2086  # word splitting wanted: one source a word
    "$cxx" "${flags[@]}" ${sources[$name]} "${link[@]}" -o "$tmp/out/$name" >"$tmp/$name.log" 2>&1 &
    pids+=("$!:$name")
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.5; done
  done
  for p in "${pids[@]}"; do
    wait "${p%%:*}" || { grep -m5 -i error "$tmp/${p#*:}.log" >&2; die "building ${p#*:} failed"; }
  done
  secs=$(($(date +%s) - t0))
  local commit number
  commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
  number=$(git -C "$src" rev-list --count HEAD 2>/dev/null || echo 0)
  cat > "$tmp/out/build.json" <<JSON
{"llama_cpp_python": "$ver", "source_commit": "$commit", "source_commits_in_sdist": $number,
 "tools": ["llama-bench", "llama-quantize", "llama-simple"],
 "linked_against": "the llama-cpp-python wheel's libraries ($libdir), copied here",
 "compiler": "$cxx $("$cxx" -dumpfullversion)", "flags": "${flags[*]:0:3}", "jobs": $jobs,
 "build_seconds": $secs, "recipe": $recipe}
JSON
  rm -rf "$out" && mkdir -p "$(dirname "$out")" && mv "$tmp/out" "$out"
  echo "built llama-bench, llama-quantize, llama-simple in $secs s" >&2
  echo "$out"
}

case "${1:-}" in
  build) cmd_build ;;
  key) cmd_key ;;
  *) die "usage: llama-bench.sh build | key" 2 ;;
esac
