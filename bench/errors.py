"""Errors that reach the user as one line and exit code 2."""


class BenchError(Exception):
    """A problem with the user's input or set-up: printed as one line, exit code 2, no traceback."""


class ConfigError(BenchError):
    """An invalid suite file, flag value or combination of parameters."""
