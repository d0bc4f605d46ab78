"""review flags on results, corrections, alias history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('needs_review', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('review_reason', sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column('margin', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('domain_score', sa.Float(), nullable=True))
        batch_op.create_index('ix_results_needs_review', ['needs_review', 'model_name'], unique=False)

    op.create_table('corrections',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('post_id', sa.String(length=200), nullable=False),
    sa.Column('model_name', sa.String(length=100), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('reviewer', sa.String(length=200), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('post_id', 'model_name', name='uq_corrections_post_model')
    )

    op.create_table('alias_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('alias', sa.String(length=50), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('previous_version', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alias_changes', schema=None) as batch_op:
        batch_op.create_index('ix_alias_changes_name', ['name', 'alias', 'changed_at'], unique=False)
    # What is known of the past: each alias's current version, since it was last moved.
    op.execute("INSERT INTO alias_changes (name, alias, version, previous_version, action, changed_at) "
               "SELECT name, alias, version, NULL, 'recorded', updated_at FROM model_aliases")


def downgrade() -> None:
    with op.batch_alter_table('alias_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_alias_changes_name')
    op.drop_table('alias_changes')
    op.drop_table('corrections')
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index('ix_results_needs_review')
        batch_op.drop_column('domain_score')
        batch_op.drop_column('margin')
        batch_op.drop_column('review_reason')
        batch_op.drop_column('needs_review')
