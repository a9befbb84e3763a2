"""Peer engines as rows: a llama.cpp-family `llama-bench` the user built (upstream llama.cpp, bitnet.cpp,
ik_llama.cpp), run on tritbench's models, its greedy tokens checked against llama.cpp F16 first."""

from tritbench.backends.llamabench.backend import LlamaBenchBackend

__all__ = ["LlamaBenchBackend"]
