"""Deadlines and earliest starts the operator set through the API survive a restart.

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
    op.create_table(
        "job_times",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("deadline_s", sa.Float(), nullable=True),
        sa.Column("begin_s", sa.Float(), nullable=True),
        sa.Column("updated_s", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_times")
