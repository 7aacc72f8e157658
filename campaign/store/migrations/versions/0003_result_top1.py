"""Each result's golden and faulty top-1 class (of the image docs/REPORTS.md names); results
recorded before this revision keep NULL, since their outputs are gone.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    there = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("result")}
    for name in ("golden_top1", "faulty_top1"):
        if name not in there:  # a store whose revision table was lost may have them
            op.add_column("result", sa.Column(name, sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.drop_column("faulty_top1")
        batch.drop_column("golden_top1")
