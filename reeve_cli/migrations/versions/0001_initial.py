"""Initial schema: pulses, attempts, schedules, events, notifications, state.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Times are fixed-width UTC text ("2026-12-03T17:00:00.000000Z"): text order is
# time order, on SQLite and PostgreSQL alike.
TIME = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "pulses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("scheduled_at", TIME, nullable=False),
        # 0 = critical ... 4 = deferred, so ORDER BY priority is urgency order.
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("session_id", sa.Text),
        sa.Column("sticky_notes", sa.Text, nullable=False, server_default="[]"),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("source", sa.String(160), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("started_at", TIME),
        sa.Column("finished_at", TIME),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("idempotency_key", sa.String(255), unique=True),
        sa.Column("executor", sa.String(64)),
        sa.Column("schedule_name", sa.String(128)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("output_tail", sa.Text),
        sa.Column("result_session_id", sa.Text),
        sa.Column("result_text", sa.Text),
        sa.Column("cost_usd", sa.Float),
        sa.Column("duration_s", sa.Float),
        sa.Column("usage", sa.Text),
        sa.Column("meta", sa.Text),
    )
    op.create_index("ix_pulses_status_due", "pulses", ["status", "scheduled_at"])
    op.create_index(
        "ix_pulses_status_order",
        "pulses",
        ["status", "priority", "scheduled_at", "id"],
    )
    op.create_index("ix_pulses_schedule", "pulses", ["schedule_name", "status"])
    op.create_index("ix_pulses_finished", "pulses", ["finished_at"])

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "pulse_id",
            sa.Integer,
            sa.ForeignKey("pulses.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME),
        sa.Column("lateness_s", sa.Float),
        sa.Column("duration_s", sa.Float),
        sa.Column("exit_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("session_id", sa.Text),
        sa.Column("cost_usd", sa.Float),
        sa.Column("usage", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("daemon_pid", sa.Integer),
        sa.Column("log_path", sa.Text),
        sa.UniqueConstraint("pulse_id", "number"),
    )
    op.create_index("ix_attempts_status", "attempts", ["status"])

    op.create_table(
        "schedules",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("cron", sa.String(255)),
        sa.Column("every_s", sa.Float),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("jitter_s", sa.Float, nullable=False, server_default="0"),
        sa.Column("session_id", sa.Text),
        sa.Column("sticky_notes", sa.Text, nullable=False, server_default="[]"),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("max_retries", sa.Integer),
        sa.Column("executor", sa.String(64)),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("last_fire_at", TIME),
        sa.Column("fire_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skip_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failure_streak", sa.Integer, nullable=False, server_default="0"),
    )

    # One row per state change, written in the same transaction as the change:
    # the source of the API's event stream (resumable by id).
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("pulse_id", sa.Integer),
        sa.Column("schedule_name", sa.String(128)),
        sa.Column("data", sa.Text),
    )
    op.create_index("ix_events_pulse", "events", ["pulse_id"])

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("notifier", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", TIME),
    )

    # Small named values that must survive restarts (Telegram offset, chat
    # sessions, the daemon's last clean stop).
    op.create_table(
        "state",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )


def downgrade() -> None:
    for table in ("state", "notifications", "events", "schedules", "attempts"):
        op.drop_table(table)
    op.drop_table("pulses")
