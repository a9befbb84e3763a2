"""resolve_model(): turn a user's model reference (preset, preset with overrides, or GGUF path) into
concrete variants."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .gguf_info import read_model_info
from .overrides import SEPARATOR, preset_name, preset_spec
from .presets import PRESETS
from .spec import ModelSpec
from .synth import check_format, model_path, synthesize


@dataclass(frozen=True)
class ModelVariant:
    """One model file to benchmark: a preset in one format (spec set) or a user's GGUF file (spec None)."""

    name: str
    format: str
    path: Path
    spec: ModelSpec | None = None

    def exists(self) -> bool:
        """True if the file is already on disk."""
        return self.path.is_file()

    def ensure(self) -> Path:
        """The file's path, synthesizing it first for a preset; ModelError if a user's file is gone."""
        if self.exists():
            return self.path
        if self.spec is None:
            raise ModelError(f"model file not found: {self.path}")
        # model_path() puts files at <cache>/<name>-<hash>/<file>, so the cache root is two levels up.
        return synthesize(self.spec, self.format, cache=self.path.parent.parent)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: name, format, path and the spec (or None)."""
        spec = self.spec.to_dict() if self.spec is not None else None
        return {"name": self.name, "format": self.format, "path": str(self.path), "spec": spec}


def resolve_model(
    ref: str,
    formats: list[str],
    cache: Path | None = None,
    embd_type: str | None = None,
    output_type: str | None = None,
) -> list[ModelVariant]:
    """Variants for ref: one per format for a preset (`small`, or with overrides `small@layers=21`), or the
    one GGUF file ref points to.

    A reference whose part before any '@' names a preset wins over a same-named file (`./small@x.gguf` is
    the file); a file's format is read from the file and formats is ignored. `embd_type`/`output_type`
    change a preset's token-embedding and output tensor types, where ref does not set them itself (the
    variant's name then says so). Nothing is synthesized here: call ModelVariant.ensure() when needed.
    """
    if preset_name(ref) in PRESETS:
        return _preset_variants(preset_spec(ref, embd_type, output_type), formats, cache)
    if _looks_like_path(ref):
        info = read_model_info(ref, digest=False)  # the run reads it again, with its digest, once planned
        return [ModelVariant(info.name, info.format, Path(info.path), None)]
    if SEPARATOR in ref:
        preset_spec(ref)  # neither a preset nor a file: raises, saying what is wrong with it as a reference
    raise ModelError(f"unknown model {ref!r}: not a preset ({', '.join(PRESETS)}) and no such file")


def _preset_variants(spec: ModelSpec, formats: list[str], cache: Path | None) -> list[ModelVariant]:
    if isinstance(formats, str):
        formats = [formats]  # a bare "tq2_0" would otherwise be split into characters
    fmts = list(dict.fromkeys(check_format(fmt) for fmt in formats))
    if not fmts:
        raise ModelError(f"no formats given for model preset '{spec.name}'")
    return [ModelVariant(spec.name, fmt, model_path(spec, fmt, cache), spec) for fmt in fmts]


def _looks_like_path(ref: str) -> bool:
    # os.path.exists() is False (never raises) for names the file system rejects.
    return "/" in ref or os.sep in ref or ref.lower().endswith(".gguf") or os.path.exists(ref)
