"""onboarding a whole school: class lists, personal family and staff codes, approval

Nullable columns and a boolean that is false for every existing invitation:
codes already handed out keep working exactly as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 11:40:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pupil', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birth_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('parents_hint', sa.String(length=256), nullable=True))
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pupil_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('person_name', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('more_group_ids', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('needs_approval', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f('ix_invitation_pupil_id'), ['pupil_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_invitation_pupil_id_pupil'), 'pupil', ['pupil_id'], ['id'])
    with op.batch_alter_table('join_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('invitation_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_join_request_invitation_id_invitation'), 'invitation', ['invitation_id'], ['id']
        )


def downgrade() -> None:
    with op.batch_alter_table('join_request', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_join_request_invitation_id_invitation'), type_='foreignkey')
        batch_op.drop_column('invitation_id')
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_invitation_pupil_id_pupil'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_invitation_pupil_id'))
        batch_op.drop_column('needs_approval')
        batch_op.drop_column('more_group_ids')
        batch_op.drop_column('person_name')
        batch_op.drop_column('pupil_id')
    with op.batch_alter_table('pupil', schema=None) as batch_op:
        batch_op.drop_column('parents_hint')
        batch_op.drop_column('birth_date')
