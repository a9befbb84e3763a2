#!/usr/bin/env bash
# An aarch64 Python with numpy and onnxruntime that runs under qemu-user on an x86 machine, so the
# NEON kernels are tested on every CI run (correctness only: emulated speed means nothing).
# Usage: .ci/arm-sysroot.sh DIR   (idempotent: a finished DIR is reused)
# Needs Debian packages qemu-user-static, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, debootstrap
# (installed here when missing and running as root).
set -euo pipefail
dir=$(realpath -m "${1:?usage: arm-sysroot.sh DIR}")
sysroot="$dir/sysroot"
site="$dir/site"
stamp="$dir/.done"
[ -f "$stamp" ] && { echo "$dir"; exit 0; }

need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v objdump >/dev/null || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "error: install ${need[*]} (apt-get install ${need[*]})" >&2; exit 1
  fi
fi

rm -rf "$dir" && mkdir -p "$dir"
# Only download and unpack (no emulated second stage): the unpacked .debs are all we need.
debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 bookworm "$sysroot" >/dev/null
for deb in "$sysroot"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
# qemu-user shows the host's x86 /proc/cpuinfo, on which onnxruntime's cpuinfo crashes; -L makes the
# guest read this file instead.
mkdir -p "$sysroot/proc"
cat > "$sysroot/proc/cpuinfo" <<'CPU'
processor	: 0
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x3
CPU part	: 0xd0c
CPU revision	: 1

CPU
pyver=$(ls "$sysroot/usr/bin" | grep -oE '^python3\.[0-9]+$' | head -1)
abi=cp${pyver#python}; abi=${abi/./}
python3 -m pip install -q --target "$site" --only-binary=:all: --python-version "${pyver#python}" \
  --implementation cp --abi "$abi" --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
  --platform manylinux_2_17_aarch64 numpy "onnxruntime==1.31.1" "onnx==1.23.2"
touch "$stamp"
echo "$dir"
