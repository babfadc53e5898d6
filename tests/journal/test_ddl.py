"""A new journal's DDL (``agent.journal.ddl``): generated from the models, and the same schema every way.

The daemon creates its journal from ``agent.journal.ddl`` without loading SQLAlchemy. That file is generated
from ``agent.journal.models`` (``.venv/bin/python -m agent.journal.models --write``); these tests fail
while it differs from what the command writes, or while a journal created from it differs from one created by
``metadata.create_all``. ``test_migrations`` holds it equal to the one every Alembic migration builds.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from agent.journal import Journal, ddl, models
from agent.journal import engine as setup
from agent.journal import migrate as migration

ROOT = Path(__file__).resolve().parents[2]


def master(database: Path) -> list[tuple[str, str, str, str | None]]:
    """Everything sqlite_master holds of the schema, alembic_version's row aside."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    conn.close()
    return rows


def columns(database: Path) -> dict[str, object]:
    """What SQLite says of each table and index (pragma-level), whatever the text that created them."""
    described: dict[str, object] = {}
    with sqlite3.connect(database) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            described[table] = (
                conn.execute(f"PRAGMA table_info({table})").fetchall(),
                sorted((name, unique, [c[2] for c in conn.execute(f"PRAGMA index_info({name})")])
                       for _, name, unique, *_ in conn.execute(f"PRAGMA index_list({table})")),
                [row[2:] for row in conn.execute(f"PRAGMA foreign_key_list({table})")],
            )
    conn.close()
    return described


def test_ddl_module_is_what_the_models_generate() -> None:
    """agent/journal/ddl.py is exactly what ``python -m agent.journal.models`` writes: regenerate it after
    changing a table."""
    generated = subprocess.run([sys.executable, "-m", "agent.journal.models"], capture_output=True, text=True,
                               check=True, cwd=ROOT).stdout
    assert (ROOT / "agent" / "journal" / "ddl.py").read_text() == generated == models.ddl_module()
    assert models.ddl() == ddl.STATEMENTS


def test_journal_from_the_ddl_is_the_one_create_all_makes(tmp_path: Path) -> None:
    """sqlite_master of a new journal (created from the DDL) is identical, statement text included, to that of
    a database made by ``metadata.create_all`` plus Alembic's table."""
    fresh = Journal.open(tmp_path / "fresh")
    fresh.close()
    reference = tmp_path / "create_all.sqlite3"
    engine = create_engine(f"sqlite:///{reference}")
    with engine.begin() as connection:
        models.metadata.create_all(connection)
        connection.execute(text(models.ALEMBIC_VERSION))
    engine.dispose()
    assert master(tmp_path / "fresh" / setup.DATABASE_NAME) == master(reference)


def test_journal_from_the_ddl_has_the_migrated_schema(tmp_path: Path) -> None:
    """Column by column, index by index, key by key, a new journal is what every migration in turn builds
    (their CREATE texts differ: Alembic writes its own, and 0005 added columns by copying tables)."""
    Journal.open(tmp_path / "fresh").close()
    migrated = setup.prepare_state_dir(tmp_path / "migrated")
    migration.run(migrated, "head")
    assert columns(tmp_path / "fresh" / setup.DATABASE_NAME) == columns(migrated)
    assert {row[:3] for row in master(tmp_path / "fresh" / setup.DATABASE_NAME)} == {
        row[:3] for row in master(migrated)}
