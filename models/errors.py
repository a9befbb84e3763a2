"""The one exception type the models package raises for bad user input."""


class ModelError(ValueError):
    """An unknown preset or format, or a model file that is missing, not GGUF, truncated or corrupt.

    The message is always one line that names the problem and the offending path or name.
    """
