"""Weight faults (modes weight_bit and weight_stuck_at, docs/FAULT-MODELS.md): the qualified
name of the parameter a site's element indexes, and the value a stuck-at fault holds its bit
at. Every other site keeps NULL.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    there = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("site")}
    if "parameter" not in there:  # a store whose revision table was lost may have them
        op.add_column("site", sa.Column("parameter", sa.String))
    if "stuck" not in there:
        op.add_column("site", sa.Column("stuck", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("site") as batch:
        batch.drop_column("stuck")
        batch.drop_column("parameter")
