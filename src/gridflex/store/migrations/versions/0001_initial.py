"""First release: events, decisions, telemetry, job state, prices, meta.

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
        "events",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("known_from_s", sa.Float(), nullable=False),
        sa.Column("baseline_w", sa.Float(), nullable=True),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.Column("updated_s", sa.Float(), nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("t_s", sa.Float(), nullable=False),
        sa.Column("site_power_w", sa.Float(), nullable=False),
        sa.Column("target_w", sa.Float(), nullable=True),
        sa.Column("it_ceiling_w", sa.Float(), nullable=True),
        sa.Column("it_power_w", sa.Float(), nullable=False),
        sa.Column("shortfall_w", sa.Float(), nullable=False),
        sa.Column("model_ratio", sa.Float(), nullable=False),
        sa.Column("planner_s", sa.Float(), nullable=False),
        sa.Column("active_events", sa.JSON(), nullable=False),
        sa.Column("broken_tier", sa.JSON(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("cap_w", sa.JSON(), nullable=False),
        sa.Column("active", sa.JSON(), nullable=False),
    )
    op.create_table(
        "telemetry",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("t_s", sa.Float(), nullable=False),
        sa.Column("site_power_w", sa.Float(), nullable=False),
        sa.Column("it_power_w", sa.Float(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("job_power_w", sa.JSON(), nullable=False),
    )
    op.create_table(
        "job_state",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("flex_tier", sa.Integer(), nullable=True),
        sa.Column("window_start_s", sa.Float(), nullable=False),
        sa.Column("window_end_s", sa.Float(), nullable=False),
        sa.Column("delivered_s", sa.Float(), nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("updated_s", sa.Float(), nullable=False),
    )
    op.create_table(
        "prices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
    )
    op.create_index("ix_events_status", "events", ["status"])
    op.create_index("ix_decisions_t_s", "decisions", ["t_s"])
    op.create_index("ix_telemetry_t_s", "telemetry", ["t_s"])
    op.create_index("ix_prices_event_id", "prices", ["event_id"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "prices", "job_state", "telemetry", "decisions", "events"):
        op.drop_table(table)
