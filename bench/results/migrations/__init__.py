"""Alembic migrations of the PostgreSQL results history (tritbench.results.postgres runs them; env.py is
Alembic's, not for import)."""
