"""onnxruntime backend pieces: the native TernaryMatMul custom op (csrc/), its packings, and ONNX graphs.

Build the op library with `make -C backends/onnx/csrc`; `graphs.session_options(n)` registers it.
"""
