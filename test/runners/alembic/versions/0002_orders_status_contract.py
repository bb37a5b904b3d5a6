"""Release 2 (backfill done, old clients gone): contract 001_orders_status_enum.

Refused, and so not recorded, until the migration is backfilled; alone in
its transaction, as its ACCESS EXCLUSIVE is held until that commits.
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_orders_status_contract"
down_revision = "0001_orders_status_expand"
branch_labels = None
depends_on = None

NAME = "001_orders_status_enum"


def upgrade():
    op.execute(sa.text("SELECT zdm.contract(:name)").bindparams(name=NAME))


def downgrade():
    raise RuntimeError(f'migration "{NAME}" is contracted and cannot be reverted')
