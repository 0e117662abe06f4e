"""First start under many processes at once (gunicorn workers, several servers on one
database): one process upgrades the schema and announces the setup link while the others wait
for it, then find nothing left to do."""

import fcntl
import os
from contextlib import contextmanager

from sqlalchemy import text

# PostgreSQL advisory lock held around one process's start. Not the migration environment's
# lock (``migrations/env.py``): the holder takes that one too, from another connection.
STARTUP_LOCK_ID = 0x6D637073  # "mcps"
LOCK_FILE_SUFFIX = ".startup-lock"


@contextmanager
def exclusive(engine, instance_path):
    """Hold the start lock of the database behind ``engine`` until the block ends.

    PostgreSQL: a session advisory lock on a connection of its own. SQLite (whose DDL the
    driver does not run in a transaction, so two upgrades interleave): ``flock`` on a file
    beside the database, or in ``instance_path`` for an in-memory one. Waits as long as another
    process holds it; a process that dies releases it.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": STARTUP_LOCK_ID})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": STARTUP_LOCK_ID})
                connection.commit()
        return
    fd = os.open(lock_file(engine, instance_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_file(engine, instance_path) -> str:
    """The file whose ``flock`` stands for the database: beside a SQLite file, so servers with
    different instance folders still share it; else in the instance folder."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return os.path.abspath(database) + LOCK_FILE_SUFFIX
    return os.path.join(instance_path, "database" + LOCK_FILE_SUFFIX)
