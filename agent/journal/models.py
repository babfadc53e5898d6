"""The journal's tables, declared once with SQLAlchemy 2's schema metadata.

They are SQLAlchemy Core tables rather than ORM classes: the agent only runs Core statements, and importing
the ORM would cost the daemon about 6 MB of its 50 MB memory budget (``bench/resources.py``).

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
    Index("ix_transitions_command_seq", "command_id", "seq", unique=True),
)

#: A key exchange opened by ``keyinit`` and used by ``password``. The shared secret is the one secret the
#: journal ever holds: only while the exchange is open, then set to NULL (secure_delete plus a WAL checkpoint
#: make it unrecoverable from the files). The rest stays as the audit record of the exchange.
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
    # The shared secret (decimal) while the exchange is open; NULL once used, replaced or expired.
    Column("secret", Text),
    # open, consumed, replaced or expired.
    Column("state", String(16), nullable=False),
    Column("closed_at", String(32)),
    # Set when a password was applied: its ciphertext's digest (a re-sent one is recognised), the key
    # derivation that decrypted it, and the password command.
    Column("applied_digest", String(64)),
    Column("derivation", String(16)),
    Column("applied_by", Integer),
    Index("ix_exchanges_state", "state"),
)

#: What is known of each installed release: "good" once installed by an operator or confirmed by an update,
#: "bad" once the supervisor rolled it back (with why); a bad release is never retried automatically.
releases = Table(
    "releases", metadata,
    Column("version", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("marked_at", String(32), nullable=False),
)

#: What the hash chains cannot hold in a row of their own, kept as key/value text (see ``agent.journal.store``):
#: where the linked command chain starts and ends (``chain_from``, ``head``), the links of commands whose
#: predecessor retention removed (``anchor:<id>``), digests of the exchange and release tables and of the
#: anchors, and the note of a broken journal this one replaced (``predecessor``).
seals = Table(
    "seals", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
