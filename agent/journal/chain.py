"""The hash chains: what each hash covers, and the text the journal stores so that it hashes the same forever.

Each command's transition rows carry a SHA-256 chain that starts from the command's genesis hash: its
identity (id, request id, domain path, name, machine, value, digest, arrival time) and a link, the genesis
of the command journaled before it. ``agent.journal.verify`` walks these chains; ``agent.journal.seals``
covers what a chain cannot (its ends, and the tables commands keep records in).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: The link of the first command of the chain.
ROOT_LINK = "0" * 64


def storable(value: str) -> str:
    """``value`` as SQLite can store it: a lone surrogate (valid in JSON, not in UTF-8) becomes its escape."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def storable_or_none(value: str | None) -> str | None:
    return None if value is None else storable(value)


def material(*fields: Any) -> bytes:
    """An unambiguous encoding of ``fields`` that exists for any Python value of the journal (escaped JSON)."""
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def canonical(detail: dict[str, Any] | None) -> str:
    """A detail or working data as the compact, key-sorted JSON the hash chain covers."""
    return json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def genesis_hash(command: Mapping[str, Any], link: str) -> str:
    """The anchor of a command's chain: its identity, and ``link`` (the genesis of the command before it)."""
    return hashlib.sha256(material(
        "command/2", command["id"], link, command["request_id"], command["domain_path"], command["name"],
        command["machine"], command["value"], command["digest"], command["received_at"])).hexdigest()


def legacy_genesis_hash(command: Mapping[str, Any]) -> str:
    """The anchor of a command journaled before ``chain_from``: its identity without machine, value or link."""
    fields = (command["request_id"], command["domain_path"], command["name"] or "", command["digest"],
              command["received_at"])
    text = "\x1f".join(["command", *map(str, fields)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def chain_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """A transition row's link in its command's chain. Working data, journaled only by the transitions that
    change it, is covered when present; rows without it hash as they always have."""
    fields: tuple[Any, ...] = (row["command_id"], row["seq"], row["trigger"], row["source"] or "", row["dest"],
                               row["at"], row["detail"])
    if row.get("data") is not None:
        fields = (*fields, row["data"])
    text = "\x1f".join([prev_hash, *map(str, fields)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
