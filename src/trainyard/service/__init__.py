"""The job service: jobs submitted over HTTP, kept in a store, run by warm isolated workers.

``store.py`` (the jobs and their transitions, SQLAlchemy), ``migrations/`` (its schema, Alembic),
``confinement.py`` (what a request may read and write), ``workers.py`` (the pool of forked job
processes), ``app.py`` (the FastAPI application), ``server.py`` (``trainyard serve``), ``client.py``
and ``commands.py`` (the Python client and the CLI commands on it). Nothing below imports it.
"""
