"""posts: an album (a media group sent as one post)

A nullable column: existing posts keep their one photo, document or video.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 11:50:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.add_column(sa.Column('album', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_column('album')
