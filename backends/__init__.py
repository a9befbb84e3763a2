"""Backend plugins. Each registers in the `tritbench.backends` entry-point group (see pyproject.toml)."""
