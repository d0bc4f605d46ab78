"""rows scored in shadow, drift sums per bucket

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shadow', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table('drift_sums',
    sa.Column('model_name', sa.String(length=100), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.Column('bucket_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('writer', sa.String(length=200), nullable=False),
    sa.Column('posts', sa.Integer(), nullable=False),
    sa.Column('label_counts', sa.JSON(), nullable=False),
    sa.Column('confidence_sum', sa.Float(), nullable=False),
    sa.Column('embedding_sum', sa.JSON(), nullable=False),
    sa.Column('embedding_sq_sum', sa.JSON(), nullable=False),
    sa.Column('review_count', sa.Integer(), nullable=True),
    sa.Column('out_of_domain_count', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model_name', 'model_version', 'bucket_start', 'writer')
    )


def downgrade() -> None:
    op.drop_table('drift_sums')
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_column('shadow')
