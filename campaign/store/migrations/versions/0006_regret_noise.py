"""Regret rows say which noise they were measured under (``evaluate --noise``: paper or
authors-2022), so a report never draws or compares rows of different noises as one. Rows
written before keep NULL and read as the paper's, the only noise there was.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "regret" not in tables:  # 0002 creates it; a store that lost it is left as it is
        return
    if "noise" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("regret")}:
        op.add_column("regret", sa.Column("noise", sa.String))


def downgrade() -> None:
    with op.batch_alter_table("regret") as batch:
        batch.drop_column("noise")
