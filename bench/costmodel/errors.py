"""The cost model's own error: inputs it cannot price (a bad shape, an unknown node or format, an invalid
energy table). The command line shows it as a one-line input error."""


class CostModelError(ValueError):
    """An input the cost model cannot price."""
