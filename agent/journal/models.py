"""The journal's tables, as SQLAlchemy 2 declarative models.

Schema changes go through Alembic (``migrations/``) and are additive only, so that an older agent still runs
on a newer schema after an update rolls back. Times are UTC ISO-8601 strings: they are what the hash chain
covers, so their text must never depend on a driver's formatting.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Command(Base):
    """One request from the host, from its arrival to the delivery of its reply."""

    __tablename__ = "commands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(256), index=True)
    domain_path: Mapped[str] = mapped_column(String(256))
    #: The command name, or None when the request was too malformed to name one.
    name: Mapped[str | None] = mapped_column(String(128))
    #: Which machine runs it (a command name, or "rejected").
    machine: Mapped[str] = mapped_column(String(64))
    #: The request's value as JSON, only for commands whose values are not secret.
    value: Mapped[str | None] = mapped_column(Text)
    #: SHA-256 of the raw request body: recognises a re-sent request without storing its content.
    digest: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[str | None] = mapped_column(String(32))
    reply_code: Mapped[str | None] = mapped_column(String(16))
    reply_message: Mapped[str | None] = mapped_column(Text)
    replied_at: Mapped[str | None] = mapped_column(String(32))
    reply_removed_at: Mapped[str | None] = mapped_column(String(32))
    #: The command's position in its hash chain, which also guards against concurrent writers.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class Transition(Base):
    """One journaled step of a command; rows form a hash chain in id order."""

    __tablename__ = "transitions"
    __table_args__ = (Index("ix_transitions_command_seq", "command_id", "seq", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command_id: Mapped[int] = mapped_column(ForeignKey("commands.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64))
    dest: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(32))
    #: Redacted JSON detail: never a secret, only digests, sizes and names.
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
