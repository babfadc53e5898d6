"""The literal SQL the daemon runs is what SQLAlchemy compiles from the models: one source of truth.

Each literal statement (``agent.journal.core``, ``seals``, ``exchanges``, ``releases``) is compared with the
SQLAlchemy statement built on ``agent.journal.models``, compiled for SQLite, with its constants written inline
and whitespace normalised. A changed table fails here, naming the statement to write again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent.journal import core, exchanges, records, releases, seals
from agent.journal import models as m
from agent.journal.sql import Statement


def compiled(statement: Any) -> str:
    """``statement`` as SQLite SQL: named parameters, constants (binds that carry a value) inline."""
    result = statement.compile(dialect=sqlite_dialect(paramstyle="named"))
    sql = str(result)
    for name, bind in result.binds.items():
        if bind.required:
            continue
        value = bind.value
        text = "NULL" if value is None else repr(value) if isinstance(value, str) else str(value)
        sql = sql.replace(f":{name}", text)
    return " ".join(sql.split())


def _every(table: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.name: bindparam(c.name) for c in table.columns if c.name not in skip}


EQUIVALENTS = [
    pytest.param(core._INSERT_COMMAND, insert(m.commands).values({
        "id": func.max(bindparam("floor"), select(func.coalesce(func.max(m.commands.c.id), 0) + 1).scalar_subquery()),
        **_every(m.commands, ("id",))}), id="insert-command"),
    pytest.param(core._INSERT_TRANSITION, insert(m.transitions).values(_every(m.transitions, ("id",))),
                 id="insert-transition"),
    pytest.param(core._UPDATE_COMMAND, update(m.commands)
                 .where(m.commands.c.id == bindparam("cid"), m.commands.c.last_seq == bindparam("expected"))
                 .values({c: bindparam(c) for c in core._MUTABLE}), id="update-command"),
    pytest.param(core._ADVANCE_HEAD, update(m.seals)
                 .where(m.seals.c.key == seals.HEAD, m.seals.c.value == bindparam("old"))
                 .values(value=bindparam("new")), id="advance-head"),
    pytest.param(core._FIND_REQUEST, select(m.commands).where(m.commands.c.request_id == bindparam("request_id"))
                 .order_by(m.commands.c.id.desc()).limit(1), id="find-request"),
    pytest.param(seals.UPSERT, sqlite_insert(m.seals).values(key=bindparam("key"), value=bindparam("value"))
                 .on_conflict_do_update(index_elements=["key"], set_={"value": bindparam("value")}), id="upsert-seal"),
    pytest.param(exchanges._CLOSE, update(m.exchanges)
                 .where(m.exchanges.c.state == exchanges.OPEN, m.exchanges.c.id == bindparam("id"))
                 .values(secret=None, state=bindparam("state"), closed_at=bindparam("at"),
                         applied_digest=bindparam("digest"), derivation=bindparam("derivation"),
                         applied_by=bindparam("command")), id="close-exchange"),
    pytest.param(exchanges._INSERT, insert(m.exchanges).values(_every(m.exchanges, ("id",))), id="insert-exchange"),
    pytest.param(releases._UPSERT, sqlite_insert(m.releases).values(_every(m.releases))
                 .on_conflict_do_update(index_elements=["version"], set_={
                     "state": bindparam("state"), "reason": bindparam("reason"),
                     "marked_at": bindparam("marked_at")}), id="upsert-release"),
]


@pytest.mark.parametrize(("literal", "statement"), EQUIVALENTS)
def test_literal_statement_is_the_compiled_one(literal: Statement, statement: Any) -> None:
    assert literal.sql == compiled(statement)


SELECTS = [
    pytest.param(core.SELECT_COMMANDS, m.commands, id="commands"),
    pytest.param(core.SELECT_TRANSITIONS, m.transitions, id="transitions"),
    pytest.param(exchanges._SELECT, m.exchanges, id="exchanges"),
    pytest.param(releases._SELECT, m.releases, id="releases"),
]


@pytest.mark.parametrize(("literal", "table"), SELECTS)
def test_select_lists_are_the_models_columns(literal: str, table: Any) -> None:
    """The daemon's reads select every column the models declare, by name, in their order."""
    assert literal == compiled(select(table))


def test_records_are_the_models_rows() -> None:
    """The records the agent sees have exactly the models' columns."""
    assert tuple(m.commands.columns.keys()) == records.COMMAND_COLUMNS
    assert tuple(m.transitions.columns.keys()) == records.TRANSITION_COLUMNS
    assert tuple(f.name for f in dataclasses.fields(exchanges.Exchange)) == tuple(m.exchanges.columns.keys())
    assert tuple(f.name for f in dataclasses.fields(releases.Verdict)) == tuple(m.releases.columns.keys())


def test_filter_is_the_compiled_condition() -> None:
    """``command_filter``, which journal list and timing use, says what the SQLAlchemy conditions say."""
    where, params = core.command_filter("version", "done", "2026-01-01T00:00:00.000000Z")
    condition = select(m.commands).where(m.commands.c.name == bindparam("name"),
                                         m.commands.c.state == bindparam("state"),
                                         m.commands.c.received_at >= bindparam("since"))
    assert f"{core.SELECT_COMMANDS} {where}" == compiled(condition)
    assert params == {"name": "version", "state": "done", "since": "2026-01-01T00:00:00.000000Z"}
    assert core.command_filter() == ("", {})
