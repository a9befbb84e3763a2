"""Errors that reach the user as one line and exit code 2."""

from __future__ import annotations

from pathlib import Path


class BenchError(Exception):
    """A problem with the user's input or set-up: printed as one line, exit code 2, no traceback."""


class ConfigError(BenchError):
    """An invalid suite file, flag value or combination of parameters."""


def read_user_text(path: Path, what: str) -> str:
    """A text file the user named, or a ConfigError saying in one line why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc}") from None
