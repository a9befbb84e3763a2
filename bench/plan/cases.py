"""The plan: a validated config expanded into variants, each with the workloads it runs.

A variant is one backend with one model file (or one kernel weight format) and fixed settings: one child
process loads it per round. Each (variant, workload) pair is a case, with one record and one `case_id`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from tritbench import machine, plugin
from tritbench.errors import ConfigError
from tritbench.plan.profiles import allowed_cpus, get_profile, parse_profiles
from tritbench.plan.suite import RunConfig
from tritbench.plan.workloads import Workload


@dataclass(frozen=True)
class KernelWeights:
    """What a kernel variant multiplies by: seeded ternary matrices in one format (no model file)."""

    format: str
    name: str = "ternary-matrix"
    path: None = None
    spec: None = None

    def exists(self) -> bool:
        return True


@dataclass
class Variant:
    """One backend with one model file and fixed settings, running pp/tg/pg workloads; `KernelVariant` is
    the kernel kind. A child process loads one variant per round; each describes its model in the records."""

    backend: str
    model: Any  # a tritbench.models.ModelVariant (a model file); KernelWeights for a KernelVariant
    n_threads: int
    options: dict
    workloads: list[Workload]
    swept: tuple[str, ...] = ()  # option names the user set, shown in labels
    limits: dict | None = None  # an edge profile's resolved limits (tritbench.plan.profiles)
    cache: str | None = None  # kernel variants: cold or hot weights
    # A gate side (tritbench.plan.ab): which side, the interpreter its children run and variables they get.
    side: dict | None = None
    python: str | None = None
    env: dict | None = None

    @property
    def label(self) -> str:
        opts = ",".join(f"{k}={self.options[k]}" for k in self.swept)
        head = f"{self.backend}/{self.model.name}/{self.model.format}/t{self.n_threads}"
        return head + (f"/{self.cache}" if self.cache else "") + (f"/{opts}" if opts else "")

    @property
    def n_ctx(self) -> int:
        return max((w.n_tokens for w in self.workloads), default=0)

    def record_model(self, info: dict, workload: Workload, layer: dict) -> dict:
        """The record's `model`: the file's metadata, name and format."""
        return {**info, "name": self.model.name, "format": self.model.format}


@dataclass
class KernelVariant(Variant):
    """One kernel backend with one weight format, cache mode and settings, running gemv/gemm workloads."""

    def record_model(self, info: dict, workload: Workload, layer: dict) -> dict:
        """The layer as the record's `model`: K x N weights, and their bytes as the layer stored them."""
        w = workload
        model = {"name": f"{w.K}x{w.N}", "format": self.model.format, "n_params": w.K * w.N}
        if layer.get("weight_bytes"):
            model.update(file_bytes=layer["weight_bytes"], bits_per_weight=layer["weight_bytes"] * 8 / (w.K * w.N))
        return model


def _variant_key(variant: Variant, model_sha256: str | None) -> dict:
    key = {"backend": variant.backend, "model": variant.model.name, "format": variant.model.format,
           "sha256": model_sha256, "n_threads": variant.n_threads, "options": variant.options,
           "cache": variant.cache}
    # only when set, so that the ids of plain runs stay what earlier versions wrote
    key |= {k: getattr(variant, k) for k in ("side", "python", "env") if getattr(variant, k)}
    return key


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def variant_id(variant: Variant, model_sha256: str | None) -> str:
    """Identity of a variant (what one child loads): the case identity without the workload."""
    return _digest(_variant_key(variant, model_sha256))


def case_id(variant: Variant, workload: Workload, model_sha256: str | None) -> str:
    """Identity of a case for --resume: same backend, model contents, settings and workload (the keys are
    sorted before hashing, so ids written by earlier versions stay valid)."""
    return _digest({**_variant_key(variant, model_sha256), "workload": workload.name})


def reps_per_round(repetitions: int, rounds: int) -> list[int]:
    """How a case's repetitions are split over its rounds: the first rounds take one more. Sample i of two
    cases of one run belongs to the same round when both have the same repetitions and rounds."""
    base, extra = divmod(repetitions, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def _backend_option_sets(backend_cls: type, options: dict[str, list]) -> list[dict]:
    """The cartesian product of this backend's options (its defaults where not swept)."""
    spec = backend_cls.options
    names = list(spec)
    for n in names:
        if spec[n].required and n not in options:
            raise ConfigError(f"backend '{backend_cls.name}' needs --opt {n}=...: {spec[n].help}")
    values = [
        [spec[n].parse(n, v) for v in options[n]] if n in options else [spec[n].default] for n in names
    ]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def build_plan(cfg: RunConfig, default_threads: int) -> list[Variant]:
    """Expand the config into variants, checking every name before anything runs.

    Each backend runs the requested workloads and formats it supports; a workload kind or format that no
    selected backend supports, or a backend that supports none of them, is an error.
    """
    from tritbench.models import resolve_model

    workloads = cfg.workloads()
    classes = {name: plugin.load(name) for name in dict.fromkeys(cfg.backends)}
    for opt in cfg.options:
        if not any(opt in cls.options for cls in classes.values()):
            known = sorted({o for cls in classes.values() for o in cls.options})
            raise ConfigError(f"unknown option '{opt}' for backends {', '.join(classes)} (known: {', '.join(known)})")
    _check_coverage(classes, workloads, cfg.formats)
    limits = None
    if cfg.profile:
        limits = get_profile(cfg.profile, parse_profiles(cfg.profiles)).resolve(allowed_cpus())
        if limits["memory_bytes"] and machine.emulator_command():
            raise ConfigError(f"profile '{cfg.profile}' caps memory with RLIMIT_AS, which crashes a program run "
                              f"under an emulator ({machine.EMULATOR_ENV} is set): run edge profiles natively")
        default_threads = limits["threads"]
        for t in cfg.threads:
            if t > len(limits["cpus"]):
                raise ConfigError(f"{t} threads exceed the {len(limits['cpus'])} CPUs of profile '{cfg.profile}'")
    threads = cfg.threads or [default_threads]
    formats = list(dict.fromkeys(cfg.formats))
    variants: list[Variant] = []
    dropped: list[str] = []
    for name, cls in classes.items():
        mine = [w for w in workloads if w.kind in cls.workload_kinds]
        llm, kernel = [w for w in mine if not w.is_kernel], [w for w in mine if w.is_kernel]
        if llm and kernel and getattr(cls, "generation_formats", None) is not None:
            # its formats name kernels in a run with kernel workloads (the gate's suite mixes both kinds)
            dropped += [w.kind for w in llm]
            llm = []
        my_formats = [f for f in formats if f in cls.formats]
        llm_formats = _generation_formats(name, cls, my_formats, cfg.models) if llm else []
        opt_sets = _backend_option_sets(cls, {k: v for k, v in cfg.options.items() if k in cls.options})
        settings = list(itertools.product(threads, opt_sets))
        for t, opts in settings:
            swept = tuple(k for k in opts if k in cfg.options)
            if llm:
                for ref in dict.fromkeys(cfg.models):
                    for model in resolve_model(ref, llm_formats, embd_type=cfg.embd_type,
                                               output_type=cfg.output_type):
                        variants.append(Variant(name, model, t, opts, llm, swept, limits=limits))
            for fmt in my_formats if kernel else []:
                for mode in dict.fromkeys(cfg.cache):
                    variants.append(KernelVariant(name, KernelWeights(fmt), t, opts, kernel, swept, limits, mode))
    ran = {w.kind for v in variants for w in v.workloads}
    for kind in dict.fromkeys(k for k in dropped if k not in ran):
        raise ConfigError(f"no selected backend runs {kind} workloads in this run: a backend with kernel formats "
                          "runs its decoder (pp/tg/pg) only in a run without gemv/gemm workloads")
    return variants


def _generation_formats(name: str, cls: type, formats: list[str], models: list[str]) -> list[str]:
    """The formats among `formats` that `cls` runs pp/tg/pg workloads in. A backend whose kernel formats are
    not all model formats lists the model ones in `generation_formats` (the onnx decoder: its packings,
    built from the GGUF of the same trits); without it, every format is a model format."""
    from tritbench.models import PRESETS
    from tritbench.models.overrides import preset_name

    allowed = getattr(cls, "generation_formats", None)
    mine = [f for f in formats if allowed is None or f in allowed]
    if allowed is not None and not mine and any(preset_name(ref) in PRESETS for ref in models):
        raise ConfigError(f"backend '{name}' runs pp/tg/pg workloads only in formats {', '.join(allowed)} "
                          f"(asked for: {', '.join(formats) or 'none of its formats'})")
    return mine


def _check_coverage(classes: dict[str, type], workloads: list[Workload], formats: list[str]) -> None:
    kinds = list(dict.fromkeys(w.kind for w in workloads))
    for kind in kinds:
        if not any(kind in cls.workload_kinds for cls in classes.values()):
            raise ConfigError(f"no selected backend runs {kind} workloads (backends: {', '.join(classes)})")
    for fmt in formats:
        if not any(fmt in cls.formats for cls in classes.values()):
            known = ", ".join(f"{n}: {'/'.join(c.formats)}" for n, c in classes.items())
            raise ConfigError(f"no selected backend has format '{fmt}' ({known})")
    for name, cls in classes.items():
        if not any(k in cls.workload_kinds for k in kinds):
            runs = ", ".join(cls.workload_kinds)
            raise ConfigError(f"backend '{name}' runs none of the requested workloads (it runs: {runs})")
        if not any(f in cls.formats for f in formats):
            raise ConfigError(f"backend '{name}' has none of the requested formats (known: {', '.join(cls.formats)})")
