"""web sign-in, API tokens, sessions, login attempts and the access log

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 09:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STR = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("username", _STR(length=40), nullable=False),
        sa.Column("password_hash", _STR(), nullable=False),
        sa.Column("changed_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["username"], ["officers.username"]),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", _STR(length=40), nullable=False),
        sa.Column("name", _STR(length=80), nullable=False),
        sa.Column("token_hash", _STR(length=64), nullable=False),
        sa.Column("prefix", _STR(length=12), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("last_used_at", _TIME(), nullable=True),
        sa.Column("revoked_at", _TIME(), nullable=True),
        sa.ForeignKeyConstraint(["username"], ["officers.username"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_username"), ["username"], unique=False)
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", _STR(length=64), nullable=False),
        sa.Column("username", _STR(length=40), nullable=False),
        sa.Column("csrf_token", _STR(length=64), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("expires_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["username"], ["officers.username"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_sessions_username"), ["username"], unique=False)
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", _STR(length=80), nullable=False),
        sa.Column("client", _STR(length=64), nullable=False),
        sa.Column("at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_attempts_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_login_attempts_client"), ["client"], unique=False)
        batch_op.create_index(batch_op.f("ix_login_attempts_username"), ["username"], unique=False)
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", _STR(length=40), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("resource", _STR(length=40), nullable=False),
        sa.Column("detail", _STR(), nullable=False),
        sa.Column("via", _STR(length=10), nullable=False),
        sa.Column("at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_log_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_log_username"), ["username"], unique=False)


def downgrade() -> None:
    op.drop_table("access_log")
    op.drop_table("login_attempts")
    op.drop_table("web_sessions")
    op.drop_table("api_tokens")
    op.drop_table("credentials")
