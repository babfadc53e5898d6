"""Alembic migrations: applied at start (in a child process), reversible, shipped in the wheel, tolerant of a
newer schema."""

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

from agent.errors import JournalError
from agent.journal import Journal, alchemy, chain, exchanges, releases, retention
from agent.journal import engine as setup
from agent.journal import migrate as migration
from agent.journal.models import metadata

ROOT = Path(__file__).resolve().parents[2]


def tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_build_revision_is_the_alembic_head() -> None:
    """SCHEMA_REVISION (the fast start-up check) names the newest migration shipped, and REVISIONS (what the
    daemon knows without loading Alembic) every one of them."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_current_head() == setup.SCHEMA_REVISION
    assert tuple(reversed([script.revision for script in scripts.walk_revisions()])) == setup.REVISIONS


def schema(database: Path) -> dict[str, object]:
    """Everything that defines the schema: columns, indexes, keys, and the stamped revision."""
    engine = alchemy.create(database)
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


def seals(database: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT key, value FROM seals ORDER BY key").fetchall()


def test_fresh_journal_equals_the_migrated_one(tmp_path: Path) -> None:
    """A new journal (tables created and stamped without Alembic) is exactly what the migrations build,
    seals included."""
    fresh = Journal.open(tmp_path / "fresh")
    migrated = setup.prepare_state_dir(tmp_path / "migrated")
    migration.run(migrated, "head")
    assert schema(Path(fresh.path)) == schema(migrated)
    assert seals(Path(fresh.path)) == seals(migrated)
    assert [key for key, _ in seals(migrated)] == ["anchors", "chain_from", "exchanges", "head", "releases"]


def test_sealed_columns_are_the_models_columns() -> None:
    """The table digests cover every column of the exchanges and releases tables (a new column is a choice)."""
    assert tuple(exchanges.table.columns.keys()) == exchanges.SEALED_COLUMNS
    assert tuple(releases.table.columns.keys()) == releases.SEALED_COLUMNS


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
    setup.migrate(database, "base")
    assert tables(database) == {"alembic_version"}
    setup.migrate(database, "head")
    assert tables(database) == expected
    record = journal.receive("r", "", "version", "version", "0" * 64, None)
    assert journal.get(record.id).state == "received"


def legacy_command(database: Path, request_id: str) -> None:
    """One command in state received as the agent journaled it before the seals (per-command chain)."""
    command = {"request_id": request_id, "domain_path": "", "name": "version", "machine": "version",
               "value": None, "digest": "0" * 64, "received_at": "2026-11-20T10:00:00.000000Z"}
    genesis = chain.legacy_genesis_hash(command)
    with sqlite3.connect(database) as conn:
        command_id = conn.execute(
            "INSERT INTO commands (request_id, domain_path, name, machine, value, digest, state, attempts, "
            "received_at, updated_at, last_seq, last_hash) VALUES (:request_id, :domain_path, :name, :machine, "
            ":value, :digest, 'received', 1, :received_at, :received_at, 0, '')", command).lastrowid
        row = {"command_id": command_id, "seq": 1, "trigger": "receive", "source": None, "dest": "received",
               "at": command["received_at"], "detail": "{}"}
        digest = chain.chain_hash(genesis, row)
        conn.execute("INSERT INTO transitions (command_id, seq, trigger, source, dest, at, detail, prev_hash, hash) "
                     "VALUES (:command_id, :seq, :trigger, :source, :dest, :at, :detail, :prev, :hash)",
                     {**row, "prev": genesis, "hash": digest})
        conn.execute("UPDATE commands SET last_seq = 1, last_hash = ? WHERE id = ?", (digest, command_id))


def test_journal_of_an_older_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """A journal at 0001 (the first release) keeps its commands and gains the later tables at start."""
    setup.migrate(setup.prepare_state_dir(tmp_path), "0001")
    legacy_command(tmp_path / setup.DATABASE_NAME, "old")
    assert "exchanges" not in tables(tmp_path / setup.DATABASE_NAME)
    journal = Journal.open(tmp_path)
    assert {"exchanges", "releases", "seals"} <= tables(Path(journal.path))
    assert [c.request_id for c in journal.commands()] == ["old"]
    with sqlite3.connect(journal.path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (setup.SCHEMA_REVISION,)
    assert journal.verify().ok


def load_legacy_journal(state_dir: Path) -> Path:
    state_dir.mkdir(mode=0o700)
    database = state_dir / setup.DATABASE_NAME
    with sqlite3.connect(database) as conn:
        conn.executescript((Path(__file__).with_name("legacy_0003.sql")).read_text())
    return database


def test_journal_written_before_the_chain_still_verifies(tmp_path: Path) -> None:
    """A journal written at 0003 verifies after the migration, under its old rules, and goes on verifying as
    the agent adds, finishes, collects and prunes commands around the old ones."""
    database = load_legacy_journal(tmp_path / "state")
    journal = Journal.open(tmp_path / "state")
    assert journal.verify().ok, journal.verify()
    assert seals(database)[1] == ("chain_from", "9")
    fresh = journal.receive("new-1", "/local/domain/5", "version", "version", "e" * 64, '"agent"')
    fresh = journal.mark_replied(journal.transition(fresh, "answer", "done",
                                                    reply={"returncode": "0", "message": "1.0"}))
    retention.mark_replies_removed(journal, [3, 4, fresh.id])  # old and new commands alike
    unfinished = journal.get(7)
    journal.transition(unfinished, "fail", "failed", reply={"returncode": "500", "message": "x"})
    journal.record_attempt(journal.receive("new-2", "", "version", "version", "f" * 64, None))
    assert retention.prune(journal, "9999", keep_min=1, max_commands=3).count == 5
    # 10 is the newest, 7 and 6 were never delivered, 5 opened the exchange that is still open.
    assert [c.id for c in journal.commands()] == [10, 7, 6, 5]
    result = journal.verify()
    assert result.ok, result
    journal.close()


LEGACY_EDITS = [
    pytest.param("UPDATE commands SET request_id = 'forged' WHERE id = 2", "command 2: transition 1",
                 id="legacy-identity"),
    pytest.param("UPDATE commands SET reply_message = 'forged' WHERE id = 2", "command 2: its stored reply",
                 id="legacy-reply"),
    pytest.param("UPDATE exchanges SET applied_by = 5 WHERE id = 1", "exchanges table", id="exchange-edit"),
    pytest.param("DELETE FROM releases WHERE version = '1.1.0'", "releases table", id="release-delete"),
]


@pytest.mark.parametrize(("sql", "problem"), LEGACY_EDITS)
def test_journal_written_before_the_chain_still_shows_edits(tmp_path: Path, sql: str, problem: str) -> None:
    """The old commands keep the protection they had; their exchanges and releases gain the digests."""
    database = load_legacy_journal(tmp_path / "state")
    Journal.open(tmp_path / "state").close()
    with sqlite3.connect(database) as conn:
        assert conn.execute(sql).rowcount == 1
    result = Journal.open_readonly(tmp_path / "state").verify()
    assert not result.ok
    assert problem in result.problem


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


def test_migration_runs_in_a_child_process(tmp_path: Path) -> None:
    """Opening a journal that needs Alembic migrates it in a child process: the opener loads neither Alembic
    nor SQLAlchemy, and gets the migrated journal."""
    setup.migrate(setup.prepare_state_dir(tmp_path), "0001")
    legacy_command(tmp_path / setup.DATABASE_NAME, "old")
    script = ("import sys, pathlib; from agent.journal import Journal;"
              "j = Journal.open(pathlib.Path(sys.argv[1])); print([c.request_id for c in j.commands()]);"
              "print(sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'alembic'))))")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            check=True, cwd=tmp_path)
    assert result.stdout.splitlines() == ["['old']", "[]"]
    assert tables(tmp_path / setup.DATABASE_NAME) >= {"exchanges", "releases", "seals"}


def test_failed_migration_is_a_clear_journal_error(tmp_path: Path) -> None:
    """A migration that fails in the child (here: a journal whose stamp says 0003 while it already has the
    seals table 0004 creates) raises JournalError naming the journal, the revisions and the child's error, and
    leaves the journal as it was (one transaction)."""
    Journal.open(tmp_path).close()
    database = tmp_path / setup.DATABASE_NAME
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003'")
    with pytest.raises(JournalError, match=r"cannot migrate the journal at .* from schema 0003 to head: "
                                           r"OperationalError: .*table seals already exists"):
        Journal.open(tmp_path)
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0003",)


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
    assert "agent/migrations/versions/0004_seals.py" in names
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
