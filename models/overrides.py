"""Preset references with field overrides: `small@layers=21`, `tiny@layers=4@vocab=2048`.

parse_ref() is the one parser of the syntax (pure: text in, PresetRef out); derive_spec() is the one rule
for naming a preset with some fields changed, shared with the --embd-type/--output-type flags, so that
`tiny@embd_type=q8_0` and `tiny --embd-type q8_0` are the same spec and hence the same cached file.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ModelError
from .presets import get_preset
from .spec import ARCHS, EMBD_TYPES, ModelSpec

SEPARATOR = "@"
# The fields a reference may set and the values each takes: None for a decimal integer, else the names it
# accepts. Not settable: `name` (derived from the changes) and `norm_eps` (changes neither size nor speed).
SETTABLE: dict[str, tuple[str, ...] | None] = {
    "arch": ARCHS, "hidden": None, "layers": None, "ffn": None, "heads": None, "kv_heads": None, "vocab": None,
    "n_ctx": None, "seed": None, "embd_type": EMBD_TYPES, "output_type": EMBD_TYPES,
}
# How a change reads in a derived name: `bench models list`'s column headers, and the flags' old suffixes.
_LABELS = {"kv_heads": "kv", "n_ctx": "ctx", "embd_type": "embd", "output_type": "output"}
# ModelSpec's field order: the order of a canonical reference and of a derived name's suffixes.
_ORDER = {f.name: i for i, f in enumerate(dataclasses.fields(ModelSpec))}
_INT_RE = re.compile(r"-?[0-9]+")
_MAX_DIGITS = 19  # room for any seed up to 2**63 - 1, and far below int()'s limit on digits


@dataclass(frozen=True)
class PresetRef:
    """A parsed reference: the preset's name (lowercase) and its overrides in ModelSpec's field order."""

    preset: str
    overrides: tuple[tuple[str, int | str], ...] = ()

    @property
    def changes(self) -> dict[str, int | str]:
        """The overrides as {field: value}."""
        return dict(self.overrides)

    def __str__(self) -> str:
        """The canonical form, e.g. `small@layers=21@vocab=2048`; parse_ref() reads it back unchanged."""
        return SEPARATOR.join([self.preset, *(f"{k}={v}" for k, v in self.overrides)])


def preset_name(ref: str) -> str:
    """The part of ref naming the preset (before the first '@'), stripped and lowercased."""
    return ref.split(SEPARATOR, 1)[0].strip().lower()


def parse_ref(ref: str) -> PresetRef:
    """`PRESET[@FIELD=VALUE...]` -> PresetRef; ModelError saying in one line what is wrong with ref.

    Field names are case-insensitive; int fields take decimal integers, the others one of their known
    names. Whether the preset exists, and whether the changed shape is valid, is preset_spec()'s to say.
    """
    if not isinstance(ref, str):
        raise ModelError(f"model reference must be text, got {type(ref).__name__}")
    preset, *parts = ref.split(SEPARATOR)
    if not preset.strip():
        raise ModelError(f"model reference {ref!r}: no preset name before '{SEPARATOR}'")
    overrides: dict[str, int | str] = {}
    for part in parts:
        field, eq, text = (p.strip() for p in part.partition("="))
        field = field.lower()
        if not eq or not field:
            raise ModelError(f"model reference {ref!r}: override {part!r} is not FIELD=VALUE")
        if field not in SETTABLE:
            raise ModelError(f"model reference {ref!r}: {_unknown_field(field)}")
        if field in overrides:
            raise ModelError(f"model reference {ref!r}: {field} is set twice")
        if not text:
            raise ModelError(f"model reference {ref!r}: {field} has no value")
        try:
            overrides[field] = _parse_value(field, text)
        except ModelError as exc:
            raise ModelError(f"model reference {ref!r}: {exc}") from None
    return PresetRef(preset.strip().lower(), tuple(sorted(overrides.items(), key=lambda kv: _ORDER[kv[0]])))


def preset_spec(ref: str, embd_type: str | None = None, output_type: str | None = None) -> ModelSpec:
    """The spec ref names: its preset with its overrides applied (see derive_spec for the name).

    embd_type/output_type (the --embd-type/--output-type flags, which apply to every preset of a run) set
    those fields where ref does not: the reference is the more specific of the two.
    """
    parsed = parse_ref(ref)
    flags = {k: v for k, v in (("embd_type", embd_type), ("output_type", output_type)) if v}
    return derive_spec(get_preset(parsed.preset), {**flags, **parsed.changes})


def derive_spec(base: ModelSpec, changes: Mapping[str, int | str]) -> ModelSpec:
    """base with changes applied, named `<base>_<field>-<value>...` in field order (`small_layers-21`,
    `tiny_embd-q8_0`); base itself if nothing changes. ModelSpec validates the result, so a bad shape gets
    its one-line message naming the derived spec."""
    changes = {k: v for k, v in changes.items() if v != getattr(base, k, None)}
    if not changes:
        return base
    ordered = sorted(changes.items(), key=lambda kv: _ORDER.get(kv[0], len(_ORDER)))
    for field, value in ordered:  # each value becomes part of a file name: only known fields and safe values
        if field not in SETTABLE:
            raise ModelError(f"cannot derive a model from preset '{base.name}': {_unknown_field(field)}")
        _check_value(field, value)
    suffix = "".join(f"_{_LABELS.get(k, k)}-{v}" for k, v in ordered)
    return dataclasses.replace(base, name=base.name + suffix, **changes)


def _parse_value(field: str, text: str) -> int | str:
    if SETTABLE[field] is None:
        if not _INT_RE.fullmatch(text):
            raise ModelError(f"{field} takes a decimal integer, got {text!r}")
        if len(text.lstrip("-")) > _MAX_DIGITS:
            raise ModelError(f"{field} {text} has more than {_MAX_DIGITS} digits")
        return int(text)
    value = text.lower()
    _check_value(field, value)
    return value


def _check_value(field: str, value: object) -> None:
    choices = SETTABLE[field]
    if choices is None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ModelError(f"{field} ({value!r}) must be an integer")
    elif value not in choices:
        raise ModelError(f"{field} {value!r} not supported (known: {', '.join(choices)})")


def _unknown_field(field: str) -> str:
    known = ", ".join(SETTABLE)
    if field == "name":
        return f"the name cannot be set: it is derived from the overrides (settable: {known})"
    return f"unknown field {field!r} (known: {known})"
