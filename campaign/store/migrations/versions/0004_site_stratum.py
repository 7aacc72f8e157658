"""Each site's stratum and the stratum's share of the fault population (sampling: stratified,
docs/DESIGN.md "Stratified sampling"), and the index claims use to take a stratum's sites in
order. Sites planned before this revision, and every site of a simple random plan, keep NULL.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    there = {c["name"] for c in sa.inspect(bind).get_columns("site")}
    if "stratum" not in there:  # a store whose revision table was lost may have them
        op.add_column("site", sa.Column("stratum", sa.String))
    if "stratum_weight" not in there:
        op.add_column("site", sa.Column("stratum_weight", sa.Float))
    if "ix_site_sampling_stratum" not in {i["name"] for i in sa.inspect(bind).get_indexes("site")}:
        op.create_index("ix_site_sampling_stratum", "site", ["model", "mode", "stratum", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_site_sampling_stratum", "site")
    with op.batch_alter_table("site") as batch:
        batch.drop_column("stratum_weight")
        batch.drop_column("stratum")
