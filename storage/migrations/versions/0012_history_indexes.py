"""history indexes: a broadcast's cost no longer grows with the outbox; copies counted once settled

- delivery: no index on person_id alone (a broadcast wrote a page of it per
  recipient, all over a year of rows); a reader's held copies get a partial
  index of their own, a person's other rows are found through
  ix_delivery_post_person.
- delivery: the claim's (status, lane, id) index becomes a partial index of
  the pending rows alone, (lane, id, next_attempt_at).
- post.copies_counted_at: when the daily job counted its settled copies into
  delivery_tally; posts already folded were counted when they were folded.

Revision ID: 0012_history
Revises: 0011
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_history'
down_revision = '0011'
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")
HELD = sa.text("status = 'held'")


def upgrade() -> None:
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.add_column(sa.Column('copies_counted_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE post SET copies_counted_at = copies_folded_at WHERE copies_folded_at IS NOT NULL")
    op.drop_index('ix_delivery_person_id', table_name='delivery')
    op.drop_index('ix_delivery_lane', table_name='delivery')
    op.create_index('ix_delivery_pending', 'delivery', ['lane', 'id', 'next_attempt_at'], unique=False,
                    sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_index('ix_delivery_held', 'delivery', ['person_id'], unique=False,
                    sqlite_where=HELD, postgresql_where=HELD)


def downgrade() -> None:
    op.drop_index('ix_delivery_held', table_name='delivery')
    op.drop_index('ix_delivery_pending', table_name='delivery')
    op.create_index('ix_delivery_lane', 'delivery', ['status', 'lane', 'id'], unique=False)
    op.create_index('ix_delivery_person_id', 'delivery', ['person_id'], unique=False)
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_column('copies_counted_at')
