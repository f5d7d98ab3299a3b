"""Telemetry says where the site power comes from: the miners' power, the site meter's reading, the source.

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
    with op.batch_alter_table("telemetry") as t:
        t.add_column(sa.Column("miners_power_w", sa.Float(), nullable=True))
        t.add_column(sa.Column("meter_power_w", sa.Float(), nullable=True))
        t.add_column(sa.Column("source", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("telemetry") as t:
        t.drop_column("source")
        t.drop_column("meter_power_w")
        t.drop_column("miners_power_w")
