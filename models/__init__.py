"""Synthetic ternary models: presets (and their overrides), deterministic GGUF synthesis, GGUF inspection and
resolution."""

from .errors import ModelError
from .gguf_info import GGUFModelInfo, read_model_info
from .overrides import PresetRef, parse_ref, preset_spec
from .presets import PRESETS, get_preset
from .resolve import ModelVariant, resolve_model
from .spec import ModelSpec
from .synth import DERIVED_FORMATS, FORMATS, cache_dir, model_path, synthesize, synthesize_many

__all__ = [
    "DERIVED_FORMATS",
    "FORMATS",
    "PRESETS",
    "GGUFModelInfo",
    "ModelError",
    "ModelSpec",
    "ModelVariant",
    "PresetRef",
    "cache_dir",
    "get_preset",
    "model_path",
    "parse_ref",
    "preset_spec",
    "read_model_info",
    "resolve_model",
    "synthesize",
    "synthesize_many",
]
