"""ci

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ci_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_name', sa.String(length=255), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('artifact_digest', sa.String(length=64), nullable=False),
    sa.Column('data_digest', sa.String(length=64), nullable=False),
    sa.Column('policy_digest', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ci_runs', schema=None) as batch_op:
        batch_op.create_index('ix_ci_runs_inputs', ['model_name', 'artifact_digest', 'data_digest'], unique=False)

    op.create_table('ci_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('cache_key', sa.String(length=64), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['ci_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ci_steps', schema=None) as batch_op:
        batch_op.create_index('ix_ci_steps_cache', ['cache_key', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_ci_steps_run_id'), ['run_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ci_steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ci_steps_run_id'))
        batch_op.drop_index('ix_ci_steps_cache')

    op.drop_table('ci_steps')
    with op.batch_alter_table('ci_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_ci_runs_inputs')

    op.drop_table('ci_runs')
