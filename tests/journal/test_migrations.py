"""Alembic migrations: applied at start, reversible, shipped in the wheel, tolerant of a newer schema."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from agent.journal import Journal
from agent.journal import engine as setup
from agent.journal.models import metadata

ROOT = Path(__file__).resolve().parents[2]


def tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_build_revision_is_the_alembic_head() -> None:
    """SCHEMA_REVISION (the fast start-up check) names the newest migration shipped."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == setup.SCHEMA_REVISION


def schema(database: Path) -> dict[str, object]:
    """Everything that defines the schema: columns, indexes, keys, and the stamped revision."""
    engine = setup.create(database)
    inspector = inspect(engine)
    described: dict[str, object] = {}
    for table in inspector.get_table_names():
        described[table] = (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            inspector.get_pk_constraint(table)["constrained_columns"],
            [(f["constrained_columns"], f["referred_table"], f["options"]) for f in inspector.get_foreign_keys(table)],
        )
    with sqlite3.connect(database) as conn:
        described["revision"] = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    engine.dispose()
    return described


def test_fresh_journal_equals_the_migrated_one(tmp_path: Path) -> None:
    """A new journal (tables created and stamped without Alembic) is exactly what the migrations build."""
    fresh = Journal.open(tmp_path / "fresh")
    migrated_engine = setup.create(setup.prepare_state_dir(tmp_path / "migrated"))
    setup._run_alembic(migrated_engine, None, "head")
    assert schema(Path(fresh.path)) == schema(Path(str(migrated_engine.url.database)))


def test_fresh_start_does_not_load_alembic(tmp_path: Path) -> None:
    """Creating a journal on first boot leaves Alembic unimported (its memory and start-up time)."""
    script = ("import sys, pathlib; from agent.journal import Journal;"
              "Journal.open(pathlib.Path(sys.argv[1])); print('alembic' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_upgrade_downgrade_round_trip(tmp_path: Path) -> None:
    """Downgrading to nothing and upgrading again gives back the same schema, and the journal works."""
    journal = Journal.open(tmp_path)
    database = Path(journal.path)
    expected = tables(database)
    assert {"commands", "transitions", "alembic_version"} <= expected
    setup.migrate(journal.engine, "base")
    assert tables(database) == {"alembic_version"}
    setup.migrate(journal.engine, "head")
    assert tables(database) == expected
    record = journal.receive("r", "", "version", "version", "0" * 64, None)
    assert journal.get(record.id).state == "received"


def test_journal_of_an_older_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """A journal at 0001 (the first release) keeps its commands and gains the exchanges table at start."""
    engine = setup.create(setup.prepare_state_dir(tmp_path))
    setup.migrate(engine, "0001")
    Journal(engine).receive("old", "", "version", "version", "0" * 64, None)
    engine.dispose()
    assert "exchanges" not in tables(tmp_path / setup.DATABASE_NAME)
    journal = Journal.open(tmp_path)
    assert "exchanges" in tables(Path(journal.path))
    assert [c.request_id for c in journal.commands()] == ["old"]
    with sqlite3.connect(journal.path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (setup.SCHEMA_REVISION,)


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    """The migrations create every column the models declare, so queries never meet a missing column."""
    journal = Journal.open(tmp_path)
    inspector = inspect(journal.engine)
    for table in metadata.sorted_tables:
        assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys())


def test_newer_schema_is_used_as_it_is(tmp_path: Path) -> None:
    """After an update rollback, an older agent meets a revision it does not know, and still runs."""
    Journal.open(tmp_path).close()
    with sqlite3.connect(tmp_path / setup.DATABASE_NAME) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'fffffffffff'")
    journal = Journal.open(tmp_path)
    assert journal.receive("r", "", "version", "version", "0" * 64, None).state == "received"


@pytest.mark.slow
def test_installed_wheel_migrates_its_journal(tmp_path: Path) -> None:
    """From a built wheel (not the checkout), the agent finds its migrations and creates the journal."""
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                    str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("openstack_agent-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "agent/migrations/env.py" in names
    assert "agent/migrations/versions/0001_journal.py" in names
    assert "agent/migrations/versions/0002_exchanges.py" in names
    assert "agent/migrations/versions/0003_releases.py" in names
    assert "agent/xenstored_shim.c" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    script = ("import agent, agent.journal as j, pathlib, sys;"
              "assert agent.__file__.startswith(sys.argv[1]), agent.__file__;"
              "jr = j.Journal.open(pathlib.Path(sys.argv[2]));"
              "print(jr.receive('r', '', 'version', 'version', '0' * 64, None).state)")
    result = subprocess.run([sys.executable, "-c", script, str(target), str(tmp_path / "state")],
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "received"
