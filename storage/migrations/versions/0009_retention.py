"""retention: folded delivery counts, how long the audit log is kept, indexes for a long history

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('delivery_tally',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('copies', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_delivery_tally_group_id_study_group')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_delivery_tally_org_id_organisation')),
    sa.ForeignKeyConstraint(['post_id'], ['post.id'], name=op.f('fk_delivery_tally_post_id_post')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_tally')),
    sa.UniqueConstraint('post_id', 'group_id', 'status', name=op.f('uq_delivery_tally_post_id_group_id_status'))
    )
    with op.batch_alter_table('delivery_tally', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_tally_org_id'), ['org_id'], unique=False)

    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audit_keep_months', sa.Integer(), server_default='18', nullable=False))

    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.add_column(sa.Column('copies_folded_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        # (post_id, person_id) leads with post_id: the single-column index is redundant.
        batch_op.drop_index('ix_delivery_post_id')
        batch_op.create_index('ix_delivery_post_person', ['post_id', 'person_id'], unique=False)
        batch_op.create_index('ix_delivery_topic_post', ['topic', 'post_id', 'status', 'person_id'], unique=False)
        batch_op.create_index('ix_delivery_edit_of', ['edit_of_id'], unique=False)

    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entry_org_id')
        batch_op.create_index('ix_audit_entry_org_created', ['org_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_subject'), ['subject'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entry_subject'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_actor_id'))
        batch_op.drop_index('ix_audit_entry_org_created')
        batch_op.create_index('ix_audit_entry_org_id', ['org_id'], unique=False)

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_edit_of')
        batch_op.drop_index('ix_delivery_topic_post')
        batch_op.drop_index('ix_delivery_post_person')
        batch_op.create_index('ix_delivery_post_id', ['post_id'], unique=False)

    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_column('copies_folded_at')

    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.drop_column('audit_keep_months')

    # Folded copies cannot be unfolded: the figures go back to what the outbox still holds.
    with op.batch_alter_table('delivery_tally', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_tally_org_id'))

    op.drop_table('delivery_tally')
