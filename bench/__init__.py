"""tritbench: benchmark and cost-model 1.58-bit (ternary) LLMs against FP16 and 4-bit on your hardware."""

from bench.records import SCHEMA, Record, load_results

__all__ = ["SCHEMA", "Record", "load_results"]
__version__ = "0.1.0"
