"""The journal's tables, declared once with SQLAlchemy 2's schema metadata: the schema's one definition.

The daemon never imports this module (nor SQLAlchemy). What it runs is derived from these tables and checked
against them by tests:

- a new journal's DDL, ``agent.journal.ddl``, generated from ``metadata`` by running this module
  (``.venv/bin/python -m agent.journal.models --write``); ``tests/journal/test_ddl.py`` fails while the
  file differs from what that writes, and holds a journal created from it identical to ``create_all``'s and
  to the one every migration builds;
- the literal statements in ``agent.journal.sql`` and the modules that write, each compared by
  ``tests/journal/test_sql.py`` with the SQLAlchemy statement built on these tables.

The inspection commands (``Journal.read``), the migrations and the tests use the tables directly. They are
SQLAlchemy Core tables rather than ORM classes: nothing here needs the ORM.

Every table is here, the command types' own (``exchanges`` for ``agent.journal.exchanges``, ``releases`` for
``agent.journal.releases``) included; those modules give them as ``exchanges.table`` and ``releases.table``.

Schema changes go through Alembic (``migrations/``) and are additive only, so that an older agent still runs
on a newer schema after an update rolls back. Times are UTC ISO-8601 strings: they are what the hash chain
covers, so their text must never depend on a driver's formatting.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, String, Table, Text, text

metadata = MetaData()

#: One request from the host, from its arrival to the delivery of its reply.
commands = Table(
    "commands", metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", String(256), nullable=False, index=True),
    Column("domain_path", String(256), nullable=False),
    # The command name, or NULL when the request was too malformed to name one.
    Column("name", String(128)),
    # Which machine runs it: a command name, or "rejected".
    Column("machine", String(64), nullable=False),
    # The request's value as JSON, only for commands whose values are not secret.
    Column("value", Text),
    # SHA-256 of the raw request body: recognises a re-sent request without storing its content.
    Column("digest", String(64), nullable=False),
    Column("state", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("received_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("finished_at", String(32)),
    Column("reply_code", String(16)),
    Column("reply_message", Text),
    Column("replied_at", String(32)),
    Column("reply_removed_at", String(32)),
    # The command's position in its hash chain, which also guards against concurrent writers.
    Column("last_seq", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
    # The machine's typed working data (JSON), as the last transition that changed it journaled it.
    Column("data", Text),
    # The few commands whose reply is not collected yet (unfinished, undelivered, or still in data/guest): what
    # recovery and reply collection look for, found without reading a journal of a million commands.
    Index("ix_commands_open", "id", sqlite_where=text("reply_removed_at IS NULL")),
)

#: One journaled step of a command; each command's rows form a hash chain in ``seq`` order.
transitions = Table(
    "transitions", metadata,
    Column("id", Integer, primary_key=True),
    Column("command_id", Integer, ForeignKey("commands.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("trigger", String(64), nullable=False),
    Column("source", String(64)),
    Column("dest", String(64), nullable=False),
    Column("at", String(32), nullable=False),
    # Redacted JSON detail: never a secret, only digests, sizes and names.
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # The working data this transition set (JSON), or NULL when it left it as it was; the chain covers it.
    Column("data", Text),
    Index("ix_transitions_command_seq", "command_id", "seq", unique=True),
)

#: What the hash chains cannot hold in a row of their own, kept as key/value text (see ``agent.journal.seals``):
#: where the linked command chain starts and ends (``chain_from``, ``head``), the links of commands whose
#: predecessor retention removed (``anchor:<id>``), digests of the sealed tables and of the
#: anchors, and the note of a broken journal this one replaced (``predecessor``).
seals = Table(
    "seals", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: Key exchanges, the records of ``keyinit`` and ``password`` (``agent.journal.exchanges``); migration 0002.
#: The audit record of each exchange stays after it is closed.
exchanges = Table(
    "exchanges", metadata,
    Column("id", Integer, primary_key=True),
    # The keyinit command that opened it; retention removes the exchange with it.
    Column("command_id", Integer, ForeignKey("commands.id", ondelete="CASCADE"), nullable=False),
    Column("opened_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
    # The agent's public key (decimal), the reply keyinit gives; not a secret.
    Column("public_key", String(64), nullable=False),
    # Strength of the group used, in bits (the protocol's 2^107-1 group: 107).
    Column("group_bits", Integer, nullable=False),
    # The shared secret (decimal) while the exchange is open; NULL once closed.
    Column("secret", Text),
    # open, consumed, replaced, expired or abandoned.
    Column("state", String(16), nullable=False),
    Column("closed_at", String(32)),
    # Set when a password was applied: its ciphertext's digest (a re-sent one is recognised), the key
    # derivation that decrypted it, and the password command.
    Column("applied_digest", String(64)),
    Column("derivation", String(16)),
    Column("applied_by", Integer),
    Index("ix_exchanges_state", "state"),
)

#: Release verdicts, the records of ``agentupdate`` (``agent.journal.releases``); migration 0003.
releases = Table(
    "releases", metadata,
    Column("version", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("marked_at", String(32), nullable=False),
)

#: Alembic's own table, as ``agent.journal.engine`` creates it for a new journal (Alembic is not loaded then).
ALEMBIC_VERSION = ("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                   "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")


def ddl() -> tuple[str, ...]:
    """The CREATE statements of a new journal, as ``metadata.create_all`` issues them for SQLite (tables in
    dependency order, each followed by its indexes), then Alembic's table."""
    from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = sqlite_dialect()
    statements: list[str] = []
    for table in metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return (*statements, ALEMBIC_VERSION)


_DDL_HEADER = '''"""A new journal's schema as SQL, generated from ``agent.journal.models``: do not edit.

Written by ``.venv/bin/python -m agent.journal.models --write`` (run it again after changing a table, with
the table's migration); ``tests/journal/test_ddl.py`` fails while this file differs from what it writes. The
daemon creates a journal from these statements, without loading SQLAlchemy or Alembic.
"""

#: The CREATE statements, in order: tables before the tables that refer to them, each followed by its indexes,
#: and Alembic's table last.
STATEMENTS = (
'''


def ddl_module() -> str:
    """The source of ``agent/journal/ddl.py``."""
    parts = [_DDL_HEADER]
    for statement in ddl():
        lines = statement.splitlines(keepends=True)
        if len(lines) == 1 and len(statement) > 90:  # a long line, cut after spaces so that it fits the source
            lines = [line for line in re.findall(r".{1,80}(?: |$)", statement) if line]
        if len(lines) == 1:
            parts.append(f"    {statement!r},\n")
        else:
            parts.append("    (\n" + "".join(f"        {line!r}\n" for line in lines) + "    ),\n")
    parts.append(")\n")
    return "".join(parts)


def write_ddl_module() -> Path:
    """Write ``agent/journal/ddl.py`` whole or not at all (a temporary file, then a rename): a shell redirect
    would empty it first, and a failure half-way would leave the agent unable to create a journal."""
    target = Path(__file__).with_name("ddl.py")
    partial = target.with_name(".ddl.py.new")
    partial.write_text(ddl_module())
    os.replace(partial, target)
    return target


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        sys.stdout.write(f"wrote {write_ddl_module()}\n")
    else:
        sys.stdout.write(ddl_module())
