"""Alembic environment of zdm's runner recipe.

transaction_per_migration=True: by default Alembic runs every pending
revision in one transaction, so expand's ACCESS EXCLUSIVE would be held
until the last of them commits, and an expand and its contract in one
upgrade are refused.  With it, each revision commits on its own, together
with its alembic_version update.
"""
import os

from alembic import context
from sqlalchemy import create_engine, pool


def run_migrations_online():
    engine = create_engine(os.environ["ZDM_DATABASE_URL"], poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
