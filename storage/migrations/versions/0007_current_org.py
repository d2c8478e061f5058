"""organisations: the one a person acts in (/org)

A nullable column: existing people keep acting in the organisation they belong to.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 18:33:19.629484
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('current_org_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_person_current_org_id_organisation'), 'organisation', ['current_org_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_person_current_org_id_organisation'), type_='foreignkey')
        batch_op.drop_column('current_org_id')
