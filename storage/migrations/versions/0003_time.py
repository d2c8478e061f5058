"""time: due items, weekly items, quiet hours, scheduled posts, acknowledgement deadlines, reminder offsets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:02:22.648361
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('due_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref_id', sa.Integer(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('key', sa.String(length=96), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('fired_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_due_item_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_due_item')),
    sa.UniqueConstraint('key', name=op.f('uq_due_item_key'))
    )
    with op.batch_alter_table('due_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_due_item_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_due_item_ref_id'), ['ref_id'], unique=False)
        batch_op.create_index('ix_due_item_state_due', ['state', 'due_at'], unique=False)

    op.create_table('weekly_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=128), nullable=False),
    sa.Column('weekday', sa.Integer(), nullable=False),
    sa.Column('time_of_day', sa.String(length=5), nullable=False),
    sa.Column('remind_minutes', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('archived_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['person.id'], name=op.f('fk_weekly_item_created_by_id_person')),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_weekly_item_group_id_study_group')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_weekly_item_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_weekly_item'))
    )
    with op.batch_alter_table('weekly_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_weekly_item_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_weekly_item_org_id'), ['org_id'], unique=False)

    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quiet_start', sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column('quiet_end', sa.String(length=5), nullable=True))

    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scheduled_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('ack_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('reminder_minutes', sa.String(length=64), nullable=True))

    # Existing organisations get the default quiet hours, existing posts their send time.
    op.execute("UPDATE organisation SET quiet_start = '21:00', quiet_end = '08:00'")
    op.execute("UPDATE post SET sent_at = created_at WHERE state IN ('sent', 'withdrawn')")


def downgrade() -> None:

    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_column('reminder_minutes')
        batch_op.drop_column('ack_due_at')
        batch_op.drop_column('sent_at')
        batch_op.drop_column('scheduled_at')

    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.drop_column('quiet_end')
        batch_op.drop_column('quiet_start')

    with op.batch_alter_table('weekly_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_weekly_item_org_id'))
        batch_op.drop_index(batch_op.f('ix_weekly_item_group_id'))

    op.drop_table('weekly_item')
    with op.batch_alter_table('due_item', schema=None) as batch_op:
        batch_op.drop_index('ix_due_item_state_due')
        batch_op.drop_index(batch_op.f('ix_due_item_ref_id'))
        batch_op.drop_index(batch_op.f('ix_due_item_org_id'))

    op.drop_table('due_item')

