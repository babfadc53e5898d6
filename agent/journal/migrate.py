"""Migrating a journal with Alembic, in a process of its own.

``agent.journal.engine.migrate`` runs this module in a child process whenever a journal needs Alembic (one
written by an older release): the daemon then never imports Alembic or SQLAlchemy, which would stay in its
memory for the rest of its life. The child is ``python -c`` on the very package the parent runs (the parent puts
its directory first on the path), given the database and the revision to reach (``engine._CHILD``).

It migrates in one ``BEGIN IMMEDIATE`` transaction, exits 0 when done, and on failure prints one line (the
error's type and message) to stderr last and exits 1: the parent makes that line a JournalError.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

from agent.journal import alchemy


def run(database: Path, revision: str = "head") -> None:
    """Upgrade (or downgrade) the journal at ``database`` to ``revision`` with the shipped migrations."""
    engine = alchemy.create(database)
    try:
        with resources.as_file(resources.files("agent.migrations")) as location:
            config = AlembicConfig()
            config.set_main_option("script_location", str(location))
            with engine.connect() as connection:
                connection.info["immediate"] = True
                with connection.begin():
                    config.attributes["connection"] = connection
                    if revision == "base":
                        command.downgrade(config, revision)
                    else:
                        command.upgrade(config, revision)
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    """``DATABASE REVISION``: migrate; 0 when done, 1 (and the error as the last line of stderr) when not."""
    database, revision = argv
    try:
        run(Path(database), revision)
    except Exception as exc:  # every failure is reported as one line; the parent decides what it means
        message = " ".join(str(exc).split())
        print(f"{type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
