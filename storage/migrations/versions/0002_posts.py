"""posts: posts, their groups, poll options, votes, acknowledgements; deliveries know their post, recipient and fallback

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:52:38.183196
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('post',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('to_parents', sa.Boolean(), nullable=False),
    sa.Column('to_students', sa.Boolean(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('media_kind', sa.String(length=16), nullable=True),
    sa.Column('media_file_id', sa.String(length=256), nullable=True),
    sa.Column('ask_ack', sa.Boolean(), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('edited_at', sa.DateTime(), nullable=True),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.Column('event_at', sa.DateTime(), nullable=True),
    sa.Column('place', sa.String(length=512), nullable=True),
    sa.Column('poll_multiple', sa.Boolean(), nullable=False),
    sa.Column('poll_anonymous', sa.Boolean(), nullable=False),
    sa.Column('poll_closes_at', sa.DateTime(), nullable=True),
    sa.Column('poll_closed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['author_id'], ['person.id'], name=op.f('fk_post_author_id_person')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_post_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_post'))
    )
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_post_author_id'), ['author_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_post_org_id'), ['org_id'], unique=False)

    op.create_table('acknowledgement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_acknowledgement_org_id_organisation')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_acknowledgement_person_id_person')),
    sa.ForeignKeyConstraint(['post_id'], ['post.id'], name=op.f('fk_acknowledgement_post_id_post')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acknowledgement')),
    sa.UniqueConstraint('post_id', 'person_id', name=op.f('uq_acknowledgement_post_id_person_id'))
    )
    with op.batch_alter_table('acknowledgement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_acknowledgement_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_acknowledgement_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_acknowledgement_post_id'), ['post_id'], unique=False)

    op.create_table('poll_option',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('text', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_poll_option_org_id_organisation')),
    sa.ForeignKeyConstraint(['post_id'], ['post.id'], name=op.f('fk_poll_option_post_id_post')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_poll_option'))
    )
    with op.batch_alter_table('poll_option', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_poll_option_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_poll_option_post_id'), ['post_id'], unique=False)

    op.create_table('post_group',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_post_group_group_id_study_group')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_post_group_org_id_organisation')),
    sa.ForeignKeyConstraint(['post_id'], ['post.id'], name=op.f('fk_post_group_post_id_post')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_post_group')),
    sa.UniqueConstraint('post_id', 'group_id', name=op.f('uq_post_group_post_id_group_id'))
    )
    with op.batch_alter_table('post_group', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_post_group_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_post_group_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_post_group_post_id'), ['post_id'], unique=False)

    op.create_table('vote',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('option_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['option_id'], ['poll_option.id'], name=op.f('fk_vote_option_id_poll_option')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_vote_org_id_organisation')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_vote_person_id_person')),
    sa.ForeignKeyConstraint(['post_id'], ['post.id'], name=op.f('fk_vote_post_id_post')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vote')),
    sa.UniqueConstraint('option_id', 'person_id', name=op.f('uq_vote_option_id_person_id'))
    )
    with op.batch_alter_table('vote', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_option_id'), ['option_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vote_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vote_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vote_post_id'), ['post_id'], unique=False)

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('post_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('person_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('fallback_method', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('fallback_payload', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_delivery_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_post_id'), ['post_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_delivery_post_id_post'), 'post', ['post_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_delivery_person_id_person'), 'person', ['person_id'], ['id'])




def downgrade() -> None:

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_delivery_person_id_person'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_delivery_post_id_post'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_delivery_post_id'))
        batch_op.drop_index(batch_op.f('ix_delivery_person_id'))
        batch_op.drop_column('fallback_payload')
        batch_op.drop_column('fallback_method')
        batch_op.drop_column('person_id')
        batch_op.drop_column('post_id')

    with op.batch_alter_table('vote', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_post_id'))
        batch_op.drop_index(batch_op.f('ix_vote_person_id'))
        batch_op.drop_index(batch_op.f('ix_vote_org_id'))
        batch_op.drop_index(batch_op.f('ix_vote_option_id'))

    op.drop_table('vote')
    with op.batch_alter_table('post_group', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_post_group_post_id'))
        batch_op.drop_index(batch_op.f('ix_post_group_org_id'))
        batch_op.drop_index(batch_op.f('ix_post_group_group_id'))

    op.drop_table('post_group')
    with op.batch_alter_table('poll_option', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_poll_option_post_id'))
        batch_op.drop_index(batch_op.f('ix_poll_option_org_id'))

    op.drop_table('poll_option')
    with op.batch_alter_table('acknowledgement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_acknowledgement_post_id'))
        batch_op.drop_index(batch_op.f('ix_acknowledgement_person_id'))
        batch_op.drop_index(batch_op.f('ix_acknowledgement_org_id'))

    op.drop_table('acknowledgement')
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_post_org_id'))
        batch_op.drop_index(batch_op.f('ix_post_author_id'))

    op.drop_table('post')

