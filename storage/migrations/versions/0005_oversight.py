"""conversations and oversight: relays, blocks, linked chats, office hours, activity, forgetting

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 16:15:54.393672
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('block',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('blocker_id', sa.Integer(), nullable=False),
    sa.Column('blocked_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['blocked_id'], ['person.id'], name=op.f('fk_block_blocked_id_person')),
    sa.ForeignKeyConstraint(['blocker_id'], ['person.id'], name=op.f('fk_block_blocker_id_person')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_block_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_block')),
    sa.UniqueConstraint('blocker_id', 'blocked_id', name=op.f('uq_block_blocker_id_blocked_id'))
    )
    with op.batch_alter_table('block', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_block_blocked_id'), ['blocked_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_block_blocker_id'), ['blocker_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_block_org_id'), ['org_id'], unique=False)

    op.create_table('relay',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('sender_id', sa.Integer(), nullable=True),
    sa.Column('recipient_id', sa.Integer(), nullable=True),
    sa.Column('to_administration', sa.Boolean(), nullable=False),
    sa.Column('reply_to_id', sa.Integer(), nullable=True),
    sa.Column('sender_message_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_relay_org_id_organisation')),
    sa.ForeignKeyConstraint(['recipient_id'], ['person.id'], name=op.f('fk_relay_recipient_id_person')),
    sa.ForeignKeyConstraint(['reply_to_id'], ['relay.id'], name=op.f('fk_relay_reply_to_id_relay')),
    sa.ForeignKeyConstraint(['sender_id'], ['person.id'], name=op.f('fk_relay_sender_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_relay'))
    )
    with op.batch_alter_table('relay', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_relay_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_relay_recipient_id'), ['recipient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_relay_sender_id'), ['sender_id'], unique=False)

    op.create_table('linked_chat',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('title', sa.String(length=256), nullable=False),
    sa.Column('invite_link', sa.String(length=256), nullable=True),
    sa.Column('linked_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_linked_chat_group_id_study_group')),
    sa.ForeignKeyConstraint(['linked_by_id'], ['person.id'], name=op.f('fk_linked_chat_linked_by_id_person')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_linked_chat_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_linked_chat')),
    sa.UniqueConstraint('chat_id', name=op.f('uq_linked_chat_chat_id'))
    )
    with op.batch_alter_table('linked_chat', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_linked_chat_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_linked_chat_org_id'), ['org_id'], unique=False)

    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('office_hours', sa.String(length=11), nullable=True))

    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('office_hours', sa.String(length=11), nullable=True))
        batch_op.add_column(sa.Column('last_seen_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('forgotten_at', sa.DateTime(), nullable=True))

    op.execute("UPDATE organisation SET office_hours = '08:00-18:00'")


def downgrade() -> None:

    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_column('forgotten_at')
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('office_hours')

    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.drop_column('office_hours')

    with op.batch_alter_table('linked_chat', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_linked_chat_org_id'))
        batch_op.drop_index(batch_op.f('ix_linked_chat_group_id'))

    op.drop_table('linked_chat')
    with op.batch_alter_table('relay', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_relay_sender_id'))
        batch_op.drop_index(batch_op.f('ix_relay_recipient_id'))
        batch_op.drop_index(batch_op.f('ix_relay_org_id'))

    op.drop_table('relay')
    with op.batch_alter_table('block', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_block_org_id'))
        batch_op.drop_index(batch_op.f('ix_block_blocker_id'))
        batch_op.drop_index(batch_op.f('ix_block_blocked_id'))

    op.drop_table('block')

