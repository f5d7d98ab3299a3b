"""What was set on a job through the API (deadline, earliest start, load floor) survives a restart.

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
        "job_overrides",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("deadline_s", sa.Float(), nullable=True),
        sa.Column("begin_s", sa.Float(), nullable=True),
        sa.Column("load_floor", sa.Float(), nullable=True),
        sa.Column("updated_s", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_overrides")
