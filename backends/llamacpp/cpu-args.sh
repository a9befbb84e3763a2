#!/bin/sh
# Prints the CMake arguments that pick llama.cpp's CPU instruction sets for this machine.
# Default: nothing (llama.cpp builds with -march=native). On an x86 CPU with AMX, -march=native also
# compiles ggml's AMX kernels, which die with SIGILL at their first tileloadd on this project's VMs
# (seen for Q8_0 and Q4_0 although the kernel grants the AMX state), so there the build names the CPU's
# other features one by one and leaves AMX out.
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
case " $flags " in
  *" amx_tile "*) ;;
  *) exit 0 ;;
esac
has() { case " $flags " in *" $1 "*) echo ON ;; *) echo OFF ;; esac; }
echo "-DGGML_NATIVE=OFF -DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma)" \
     "-DGGML_F16C=$(has f16c) -DGGML_BMI2=$(has bmi2) -DGGML_AVX_VNNI=$(has avx_vnni)" \
     "-DGGML_AVX512=$(has avx512f) -DGGML_AVX512_VBMI=$(has avx512vbmi)" \
     "-DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_BF16=$(has avx512_bf16)" \
     "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
