"""retraining configs, jobs and decisions

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('retrain_configs',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id')
    )
    op.create_table('retrain_decisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=128), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('retrain_decisions', schema=None) as batch_op:
        batch_op.create_index('ix_retrain_decisions_model', ['model_id', 'last_at'], unique=False)

    op.create_table('retrain_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=True),
    sa.Column('log', sa.Text(), nullable=False),
    sa.Column('wall_seconds', sa.Float(), nullable=True),
    sa.Column('peak_rss_mb', sa.Float(), nullable=True),
    sa.Column('outcome', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('retrain_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_retrain_jobs_model', ['model_id', 'created_at'], unique=False)
        batch_op.create_index('ix_retrain_jobs_queue', ['state', 'priority', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('retrain_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_retrain_jobs_queue')
        batch_op.drop_index('ix_retrain_jobs_model')

    op.drop_table('retrain_jobs')
    with op.batch_alter_table('retrain_decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_retrain_decisions_model')

    op.drop_table('retrain_decisions')
    op.drop_table('retrain_configs')
