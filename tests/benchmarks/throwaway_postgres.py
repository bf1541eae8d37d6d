"""A PostgreSQL database made for one benchmark and dropped after it, at PGHOST:PGPORT as PGUSER (127.0.0.1:5432 as
postgres unless they say otherwise)."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_database(prefix: str, label: str) -> Iterator[str | None]:
    """The URL of a new database `<prefix>_<pid>`, dropped on the way out; None, with a note on standard error,
    when PostgreSQL cannot be reached (the benchmark then skips its PostgreSQL part)."""
    import psycopg

    user = os.environ.get("PGUSER", "postgres")
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    name = f"{prefix}_{os.getpid()}"
    admin = f"postgres://{user}@{host}:{port}/postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        print(f"[{label}] skipped: cannot create a database at {host}:{port} ({error})", file=sys.stderr, flush=True)
        yield None
        return
    try:
        yield f"postgres://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
