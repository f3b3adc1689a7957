"""Alembic environment of the index: `env.py` and hand-written revisions in `versions/`.

Run through `archive.index.migrate` (or `Index.migrate()`); there is no alembic.ini.
"""
