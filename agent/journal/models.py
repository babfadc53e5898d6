"""The journal's tables, declared once with SQLAlchemy 2's schema metadata.

They are SQLAlchemy Core tables rather than ORM classes: the agent only runs Core statements, and importing
the ORM would cost the daemon about 6 MB of its 50 MB memory budget (``bench/resources.py``).

The core tables are here; a command type's own tables are declared in its records module
(``agent.journal.exchanges``, ``agent.journal.releases``) on the same ``metadata``.

Schema changes go through Alembic (``migrations/``) and are additive only, so that an older agent still runs
on a newer schema after an update rolls back. Times are UTC ISO-8601 strings: they are what the hash chain
covers, so their text must never depend on a driver's formatting.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, String, Table, Text

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
