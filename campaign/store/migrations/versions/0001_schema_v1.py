"""The store as it was before migrations (schema_version 1): campaign, site, result.

Stores written then carry no revision; they are stamped with this one and upgraded from it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("models", sa.Text, nullable=False),
        sa.Column("workload", sa.Text, nullable=False),
        sa.Column("fault_model", sa.Text, nullable=False),
        sa.Column("created", sa.String, nullable=False),
    )
    op.create_table(
        "site",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("mode", sa.String, nullable=False),
        sa.Column("layer", sa.Integer),
        sa.Column("layer_name", sa.String),
        sa.Column("image", sa.Integer),
        sa.Column("element", sa.BigInteger),
        sa.Column("bit", sa.Integer),
        sa.Column("width", sa.Integer),
        sa.Column("value_seed", sa.BigInteger),
        sa.Column("kernel", sa.String),
        sa.Column("kcount", sa.BigInteger),
        sa.Column("igid", sa.Integer),
        sa.Column("iid", sa.BigInteger),
        sa.Column("op_seed", sa.Float),
        sa.Column("bit_seed", sa.Float),
        sa.Column("value", sa.Float),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("owner", sa.String),
        sa.Column("lease_until", sa.Float),
    )
    op.create_index("ix_site_model", "site", ["model"])
    op.create_index("ix_site_mode", "site", ["mode"])
    op.create_index("ix_site_status", "site", ["status"])
    op.create_index("ix_site_stratum", "site", ["model", "mode", "status", "id"])
    op.create_table(
        "result",
        sa.Column("site_id", sa.Integer, sa.ForeignKey("site.id"), primary_key=True, autoincrement=False),
        sa.Column("outcome", sa.String, nullable=False),
        sa.Column("images_changed", sa.Integer, nullable=False),
        sa.Column("nan", sa.Boolean, nullable=False),
        sa.Column("max_abs_diff", sa.Float),
        sa.Column("backend", sa.String, nullable=False),
        sa.Column("isolation", sa.String, nullable=False),
        sa.Column("semantics", sa.String, nullable=False),
        sa.Column("detail", sa.String),
        sa.Column("runtime_s", sa.Float, nullable=False),
        sa.Column("finished", sa.String, nullable=False),
    )
    op.create_index("ix_result_outcome", "result", ["outcome"])


def downgrade() -> None:
    for table in ("result", "site", "campaign"):
        op.drop_table(table)
