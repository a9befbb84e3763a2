"""The results history: one row per (run_id, case_id), its whole record beside it, and the result files it was
ingested from.

`tritbench_records` has the columns of the embedded history (tritbench.results.history.COLUMNS) but the record,
which `tritbench_record_json` holds: PostgreSQL moves only values past ~2 kB out of a table's rows, so a compact
record kept inline would make every query scan it. Text is compared in the "C" collation, byte by byte as DuckDB
does, so that which record wins (the larger digest of two stamped the same second) and the order of rows are the
same in both stores."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _text(name: str, **kw) -> sa.Column:
    return sa.Column(name, sa.Text(collation="C"), **kw)


def upgrade() -> None:
    op.create_table(
        "tritbench_records",
        _text("run_id", nullable=False), _text("case_id", nullable=False), _text("schema"),
        _text("timestamp"), sa.Column("utc", sa.DateTime()), _text("status"),
        _text("machine_id"), _text("machine_cpu"), _text("machine_arch"),
        _text("backend_name"), _text("backend_version"),
        _text("model_name"), _text("model_format"), _text("model_sha256"),
        _text("workload_name"), _text("workload_kind"),
        sa.Column("n_threads", sa.BigInteger()), sa.Column("tokens_per_s", sa.Double()),
        _text("digest", nullable=False),
        sa.PrimaryKeyConstraint("run_id", "case_id", name="tritbench_records_pkey"),
    )
    op.create_index("tritbench_records_utc", "tritbench_records", ["utc"])  # --since
    # median tokens/s by machine x model x backend x threads (the team's query over months) from this index alone,
    # already in group order: no sort, no table read; machine_id first serves --machine too
    op.create_index("tritbench_records_tokens", "tritbench_records",
                    ["machine_id", "model_name", "backend_name", "n_threads", "tokens_per_s"],
                    postgresql_where=sa.text("status = 'ok' AND tokens_per_s IS NOT NULL"))
    op.create_table(
        "tritbench_record_json",
        _text("run_id", nullable=False), _text("case_id", nullable=False), _text("record", nullable=False),
        sa.PrimaryKeyConstraint("run_id", "case_id", name="tritbench_record_json_pkey"),
    )
    op.create_table(
        "tritbench_sources",
        _text("path", primary_key=True), _text("sha256", nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tritbench_sources")
    op.drop_table("tritbench_record_json")
    op.drop_table("tritbench_records")
