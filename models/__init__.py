"""Synthetic ternary models: presets, deterministic GGUF synthesis, GGUF inspection and resolution."""

from .errors import ModelError
from .gguf_info import GGUFModelInfo, read_model_info
from .presets import PRESETS, get_preset
from .resolve import ModelVariant, resolve_model
from .spec import ModelSpec
from .synth import FORMATS, cache_dir, model_path, synthesize, synthesize_many

__all__ = [
    "FORMATS",
    "PRESETS",
    "GGUFModelInfo",
    "ModelError",
    "ModelSpec",
    "ModelVariant",
    "cache_dir",
    "get_preset",
    "model_path",
    "read_model_info",
    "resolve_model",
    "synthesize",
    "synthesize_many",
]
