"""Alembic environment: runs migrations on the connection that open_database hands over.

There is no alembic.ini: ``sharon_server.storage.database.alembic_config()`` builds the
config in code and puts the live (sync-facade) connection in
``config.attributes["connection"]``; the migrations run inside the caller's transaction.
"""

from __future__ import annotations

from alembic import context

from sharon_server.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "sharon_server migrations run through sharon_server.storage.database.open_database "
        "(or Database.migrate()), which supplies the connection"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
