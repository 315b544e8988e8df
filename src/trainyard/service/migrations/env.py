"""Alembic's environment for the job store: run on the connection ``store.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from trainyard.service.store import VERSION_TABLE, Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
