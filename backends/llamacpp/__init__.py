"""llama.cpp through llama-cpp-python's low-level API (no sampling, no prefix reuse)."""

from tritbench.backends.llamacpp.backend import LlamaCppBackend

__all__ = ["LlamaCppBackend"]
