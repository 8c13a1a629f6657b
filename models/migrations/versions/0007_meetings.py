"""meetings, agenda items, consultation requests, action items; iCalendar invitations in the outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STR = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "meetings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", _STR(length=20), nullable=False),
        sa.Column("schedule_id", _STR(length=40), nullable=False),
        sa.Column("period_key", _STR(length=20), nullable=False),
        sa.Column("uid", _STR(length=80), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("title", _STR(), nullable=False),
        sa.Column("starts_at", _TIME(), nullable=False),
        sa.Column("ends_at", _TIME(), nullable=False),
        sa.Column("place", _STR(), nullable=False),
        sa.Column("video_link", _STR(), nullable=False),
        sa.Column("convening_agency", _STR(length=40), nullable=False),
        sa.Column("invited", sa.JSON(), nullable=False),
        sa.Column("state", _STR(length=20), nullable=False),
        sa.Column("attendance", sa.JSON(), nullable=False),
        sa.Column("minutes", _STR(), nullable=False),
        sa.Column("minutes_by", _STR(length=40), nullable=False),
        sa.Column("minutes_at", _TIME(), nullable=True),
        sa.Column("cancel_reason", _STR(), nullable=False),
        sa.Column("created_by", _STR(length=40), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("updated_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["convening_agency"], ["agencies.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meetings_starts_at"), ["starts_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_meetings_state"), ["state"], unique=False)
        batch_op.create_index(
            "uq_meeting_period",
            ["schedule_id", "period_key"],
            unique=True,
            sqlite_where=sa.text("period_key != ''"),
            postgresql_where=sa.text("period_key != ''"),
        )
    op.create_table(
        "agenda_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", _STR(length=30), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("ref_id", sa.Integer(), nullable=True),
        sa.Column("title", _STR(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agenda_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agenda_items_meeting_id"), ["meeting_id"], unique=False)
    op.create_table(
        "consultation_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("topic", _STR(length=30), nullable=False),
        sa.Column("question", _STR(), nullable=False),
        sa.Column("requested_by", _STR(length=40), nullable=False),
        sa.Column("agency_code", _STR(length=40), nullable=False),
        sa.Column("requested_at", _TIME(), nullable=False),
        sa.Column("state", _STR(length=20), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=True),
        sa.Column("resolution", _STR(), nullable=False),
        sa.Column("resolved_at", _TIME(), nullable=True),
        sa.ForeignKeyConstraint(["agency_code"], ["agencies.code"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consultation_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consultation_requests_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_consultation_requests_state"), ["state"], unique=False)
    op.create_table(
        "action_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("text", _STR(), nullable=False),
        sa.Column("owner_agency", _STR(length=40), nullable=False),
        sa.Column("due_at", _TIME(), nullable=False),
        sa.Column("state", _STR(length=10), nullable=False),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("escalated_for", _TIME(), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("done_at", _TIME(), nullable=True),
        sa.Column("done_by", _STR(length=40), nullable=False),
        sa.Column("done_note", _STR(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"]),
        sa.ForeignKeyConstraint(["owner_agency"], ["agencies.code"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_action_items_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_action_items_meeting_id"), ["meeting_id"], unique=False)
        batch_op.create_index(
            "ix_action_items_open_due",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text("state = 'open'"),
            postgresql_where=sa.text("state = 'open'"),
        )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ics", _STR(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("ics")
    op.drop_table("action_items")
    op.drop_table("consultation_requests")
    op.drop_table("agenda_items")
    op.drop_table("meetings")
