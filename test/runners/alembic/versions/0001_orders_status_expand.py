"""Release 1: expand 001_orders_status_enum and start its backfill."""
import json

import sqlalchemy as sa
from alembic import op

revision = "0001_orders_status_expand"
down_revision = None
branch_labels = None
depends_on = None

NAME = "001_orders_status_enum"
MIGRATION = {
    "operations": [{"alter_column": {
        "table": "orders", "column": "legacy_status", "name": "status_enum",
        "type": "order_status", "nullable": False,
        "up": "legacy_status::order_status",
        "down": "status_enum::text"}}]}


def upgrade():
    # The JSON is a bind parameter, never text in the statement: text()
    # reads ":false" in '{"nullable":false}' as a parameter of its own.
    # Expand, or wait for the session that holds the migration's lock and
    # fail unless it committed, so the revision is recorded only when the
    # migration exists.
    op.execute(sa.text(
        "SELECT CASE WHEN zdm.expand(:name, CAST(:migration AS jsonb)) THEN 'expanded'"
        " ELSE zdm.wait_expanded(:name, interval '60 seconds') END"
    ).bindparams(name=NAME, migration=json.dumps(MIGRATION)))
    # The background worker starts once this revision's transaction commits.
    op.execute(sa.text("SELECT zdm.start_backfill(:name)").bindparams(name=NAME))


def downgrade():
    op.execute(sa.text("SELECT zdm.rollback(:name)").bindparams(name=NAME))
