"""The tables that older versions created on first use, each only where it is missing: regret
evaluations and the NVBitFI injector's accounts (injection, launch_count, redraw); and the worker
table that ``status`` reads: who holds sites, from which host and Slurm task, how fast they go.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    there = set(sa.inspect(op.get_bind()).get_table_names())
    if "regret" not in there:
        op.create_table(
            "regret",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("model", sa.String, nullable=False),
            sa.Column("sha256", sa.String, nullable=False),
            sa.Column("label", sa.String, nullable=False),
            sa.Column("dataset", sa.String, nullable=False),
            sa.Column("source", sa.String, nullable=False),
            sa.Column("images", sa.Integer, nullable=False),
            sa.Column("repeats", sa.Integer, nullable=False),
            sa.Column("seed", sa.BigInteger, nullable=False),
            sa.Column("fault_model", sa.Text, nullable=False),
            sa.Column("clean", sa.Float, nullable=False),
            sa.Column("noisy", sa.Float, nullable=False),
            sa.Column("noisy_low", sa.Float),
            sa.Column("noisy_high", sa.Float),
            sa.Column("regret", sa.Float, nullable=False),
            sa.Column("regret_low", sa.Float),
            sa.Column("regret_high", sa.Float),
            sa.Column("created", sa.String, nullable=False),
        )
    if "launch_count" not in there:
        op.create_table(
            "launch_count",
            sa.Column("model", sa.String, primary_key=True),
            sa.Column("igid", sa.Integer, primary_key=True),
            sa.Column("kcount", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("kernel", sa.String, nullable=False),
            sa.Column("profile_count", sa.BigInteger, nullable=False),
            sa.Column("injector_count", sa.BigInteger, nullable=False),
            sa.Column("site_id", sa.Integer),
            sa.Column("observed", sa.String, nullable=False),
        )
    if "redraw" not in there:
        op.create_table(
            "redraw",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("site_id", sa.Integer, sa.ForeignKey("site.id"), nullable=False),
            sa.Column("kernel", sa.String, nullable=False),
            sa.Column("kcount", sa.BigInteger, nullable=False),
            sa.Column("iid", sa.BigInteger, nullable=False),
            sa.Column("injector_count", sa.BigInteger, nullable=False),
            sa.Column("ran", sa.Boolean, nullable=False),
            sa.Column("created", sa.String, nullable=False),
        )
        op.create_index("ix_redraw_site_id", "redraw", ["site_id"])
    if "injection" not in there:
        op.create_table(
            "injection",
            sa.Column("site_id", sa.Integer, sa.ForeignKey("site.id"), primary_key=True, autoincrement=False),
            sa.Column("state", sa.String, nullable=False),
            sa.Column("lanes_injected", sa.Integer, nullable=False),
            sa.Column("lanes_reported", sa.Integer, nullable=False),
            sa.Column("opcode", sa.String),
            sa.Column("reg", sa.Integer),
            sa.Column("mask", sa.BigInteger),
            sa.Column("lanes", sa.Text, nullable=False),
            sa.Column("log_index", sa.Integer),
            sa.Column("log_kernel", sa.String),
        )
    op.create_table(
        "worker",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("job", sa.String),
        sa.Column("array_index", sa.Integer),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),
        sa.Column("lease_s", sa.Float, nullable=False),
        sa.Column("done", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("worker")  # the others may predate this revision: they stay
