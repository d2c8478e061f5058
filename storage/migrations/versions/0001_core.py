"""core: organisations, groups, people, invitations, join requests, outbox, audit

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 15:40:54.859347
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('organisation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('support_contact', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation'))
    )
    op.create_table('person',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('telegram_id', sa.BigInteger(), nullable=False),
    sa.Column('full_name', sa.String(length=128), nullable=True),
    sa.Column('telegram_name', sa.String(length=256), nullable=False),
    sa.Column('locale', sa.String(length=8), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person')),
    sa.UniqueConstraint('telegram_id', name=op.f('uq_person_telegram_id'))
    )
    op.create_table('audit_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=48), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.String(length=512), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['person.id'], name=op.f('fk_audit_entry_actor_id_person')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_audit_entry_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entry'))
    )
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entry_org_id'), ['org_id'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=True),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('topic', sa.String(length=32), nullable=True),
    sa.Column('ref_id', sa.Integer(), nullable=True),
    sa.Column('edit_of_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['edit_of_id'], ['delivery.id'], name=op.f('fk_delivery_edit_of_id_delivery')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_delivery_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery'))
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_org_id'), ['org_id'], unique=False)
        batch_op.create_index('ix_delivery_topic', ['topic', 'ref_id'], unique=False)

    op.create_table('study_group',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('archived_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_study_group_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_study_group'))
    )
    with op.batch_alter_table('study_group', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_group_org_id'), ['org_id'], unique=False)

    op.create_table('invitation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('max_uses', sa.Integer(), nullable=True),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['person.id'], name=op.f('fk_invitation_created_by_id_person')),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_invitation_group_id_study_group')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_invitation_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invitation')),
    sa.UniqueConstraint('code', name=op.f('uq_invitation_code'))
    )
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitation_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invitation_org_id'), ['org_id'], unique=False)

    op.create_table('join_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('full_name', sa.String(length=128), nullable=False),
    sa.Column('child_name', sa.String(length=128), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['decided_by_id'], ['person.id'], name=op.f('fk_join_request_decided_by_id_person')),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_join_request_group_id_study_group')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_join_request_org_id_organisation')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_join_request_person_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_join_request'))
    )
    with op.batch_alter_table('join_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_join_request_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_join_request_org_id'), ['org_id'], unique=False)
        batch_op.create_index('ix_join_request_org_state', ['org_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_join_request_person_id'), ['person_id'], unique=False)

    op.create_table('pupil',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('full_name', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_pupil_group_id_study_group')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_pupil_org_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pupil'))
    )
    with op.batch_alter_table('pupil', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pupil_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pupil_org_id'), ['org_id'], unique=False)

    op.create_table('guardianship',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('pupil_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_guardianship_org_id_organisation')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_guardianship_person_id_person')),
    sa.ForeignKeyConstraint(['pupil_id'], ['pupil.id'], name=op.f('fk_guardianship_pupil_id_pupil')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_guardianship')),
    sa.UniqueConstraint('person_id', 'pupil_id', name=op.f('uq_guardianship_person_id_pupil_id'))
    )
    with op.batch_alter_table('guardianship', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_guardianship_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_guardianship_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_guardianship_pupil_id'), ['pupil_id'], unique=False)

    op.create_table('membership',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('invitation_id', sa.Integer(), nullable=True),
    sa.Column('verified_by_id', sa.Integer(), nullable=True),
    sa.Column('verified_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['study_group.id'], name=op.f('fk_membership_group_id_study_group')),
    sa.ForeignKeyConstraint(['invitation_id'], ['invitation.id'], name=op.f('fk_membership_invitation_id_invitation')),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], name=op.f('fk_membership_org_id_organisation')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_membership_person_id_person')),
    sa.ForeignKeyConstraint(['verified_by_id'], ['person.id'], name=op.f('fk_membership_verified_by_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_membership')),
    sa.UniqueConstraint('group_id', 'person_id', 'role', name=op.f('uq_membership_group_id_person_id_role'))
    )
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_membership_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_membership_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_membership_person_id'), ['person_id'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_membership_person_id'))
        batch_op.drop_index(batch_op.f('ix_membership_org_id'))
        batch_op.drop_index(batch_op.f('ix_membership_group_id'))

    op.drop_table('membership')
    with op.batch_alter_table('guardianship', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_guardianship_pupil_id'))
        batch_op.drop_index(batch_op.f('ix_guardianship_person_id'))
        batch_op.drop_index(batch_op.f('ix_guardianship_org_id'))

    op.drop_table('guardianship')
    with op.batch_alter_table('pupil', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pupil_org_id'))
        batch_op.drop_index(batch_op.f('ix_pupil_group_id'))

    op.drop_table('pupil')
    with op.batch_alter_table('join_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_join_request_person_id'))
        batch_op.drop_index('ix_join_request_org_state')
        batch_op.drop_index(batch_op.f('ix_join_request_org_id'))
        batch_op.drop_index(batch_op.f('ix_join_request_group_id'))

    op.drop_table('join_request')
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitation_org_id'))
        batch_op.drop_index(batch_op.f('ix_invitation_group_id'))

    op.drop_table('invitation')
    with op.batch_alter_table('study_group', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_group_org_id'))

    op.drop_table('study_group')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_topic')
        batch_op.drop_index(batch_op.f('ix_delivery_org_id'))
        batch_op.drop_index('ix_delivery_due')

    op.drop_table('delivery')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entry_org_id'))

    op.drop_table('audit_entry')
    op.drop_table('person')
    op.drop_table('organisation')
    
