"""families: daily digest, absence notices and their cut-off

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 16:11:10.107222
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('absence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('pupil_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_absence_group_id_study_group')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_absence_org_id_organisation')),
    sa.ForeignKeyConstraint(['parent_id'], ['person.id'], name=op.f('fk_absence_parent_id_person')),
    sa.ForeignKeyConstraint(['pupil_id'], ['pupil.id'], name=op.f('fk_absence_pupil_id_pupil')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_absence'))
    )
    with op.batch_alter_table('absence', schema=None) as batch_op:
        batch_op.create_index('ix_absence_group_dates', ['group_id', 'start_date', 'end_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_absence_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_absence_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_absence_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_absence_pupil_id'), ['pupil_id'], unique=False)

    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('absence_cutoff', sa.String(length=5), nullable=True))

    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_at', sa.String(length=5), nullable=True))

    op.execute("UPDATE organisation SET absence_cutoff = '09:00'")


def downgrade() -> None:

    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_column('digest_at')

    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.drop_column('absence_cutoff')

    with op.batch_alter_table('absence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_absence_pupil_id'))
        batch_op.drop_index(batch_op.f('ix_absence_parent_id'))
        batch_op.drop_index(batch_op.f('ix_absence_org_id'))
        batch_op.drop_index(batch_op.f('ix_absence_group_id'))
        batch_op.drop_index('ix_absence_group_dates')

    op.drop_table('absence')

