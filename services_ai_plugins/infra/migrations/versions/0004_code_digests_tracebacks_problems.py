"""code digests, traceback frames of failures, plugin problems seen by workers

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Versions installed before digests were kept get theirs when a host next extracts them.
    with op.batch_alter_table("plugin_versions") as batch:
        batch.add_column(sa.Column("tree_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("hook_results") as batch:
        batch.add_column(sa.Column("traceback", JSON, nullable=True))
    op.create_table(
        "plugin_problems",
        sa.Column("plugin_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["plugin_id"],
            ["plugins.id"],
            name=op.f("fk_plugin_problems_plugin_id_plugins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plugin_id", "kind", name=op.f("pk_plugin_problems")),
    )


def downgrade() -> None:
    op.drop_table("plugin_problems")
    with op.batch_alter_table("hook_results") as batch:
        batch.drop_column("traceback")
    with op.batch_alter_table("plugin_versions") as batch:
        batch.drop_column("tree_sha256")
