"""lanes and rights: the outbox's lane; whether an invitation is the organisation's

- delivery.lane: cards and notices to people (1) are claimed before broadcasts
  and digests (2); existing rows get the lane of their topic.
- block.blocked_key: a keyed hash of a blocked person's Telegram id, kept
  when they delete their data, so the block holds if they come back.
- invitation.issued_by_admin: an admin's code outlives its creator; existing
  codes for staff roles, or made by someone who was an admin, are marked so.

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BULK = ("post", "post_edit", "post_withdraw", "post_renotify", "event_reminder", "weekly_reminder", "digest")


def upgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lane', sa.SmallInteger(), server_default='1', nullable=False))
        batch_op.create_index('ix_delivery_lane', ['status', 'lane', 'id'], unique=False)
    delivery = sa.table('delivery', sa.column('lane', sa.SmallInteger()), sa.column('topic', sa.String()))
    op.execute(delivery.update().where(delivery.c.topic.in_(BULK)).values(lane=2))
    with op.batch_alter_table('block', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blocked_key', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_block_blocked_key'), ['blocked_key'], unique=False)
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issued_by_admin', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute(
        "UPDATE invitation SET issued_by_admin = TRUE WHERE role IN ('admin', 'head', 'teacher', 'specialist') "
        "OR EXISTS (SELECT 1 FROM membership m WHERE m.person_id = invitation.created_by_id "
        "AND m.org_id = invitation.org_id AND m.role = 'admin')"
    )


def downgrade() -> None:
    with op.batch_alter_table('block', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_block_blocked_key'))
        batch_op.drop_column('blocked_key')
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.drop_column('issued_by_admin')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_lane')
        batch_op.drop_column('lane')
