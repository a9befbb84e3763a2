"""Alembic's environment for the PostgreSQL results history (tritbench.results.postgres).

Migrations run programmatically only: PostgresStore hands over an open connection, inside a transaction that
holds the history's advisory lock, in `config.attributes["connection"]`, and the name of the version table in
`config.attributes["version_table"]`; there is no alembic.ini. A new revision is a new file in versions/ whose
`down_revision` is the previous head."""

from alembic import context

attributes = context.config.attributes
context.configure(connection=attributes["connection"], version_table=attributes["version_table"],
                  transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
