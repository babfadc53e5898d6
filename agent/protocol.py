"""The wire format the host speaks: parsing requests and building replies.

A request is ``{"name": <command>, "value": <value>}`` at ``data/host/<id>``; a reply is
``{"returncode": "<string>", "message": "<string>"}`` at ``data/guest/<id>``. The returncode is always a
string, because nova compares it against lists of strings. Error messages keep the wording of the earlier
agents so that operators' tooling still recognises them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from agent import jsontext
from agent.errors import CommandError, RequestRejected

HOST_DIR = "data/host"
GUEST_DIR = "data/guest"
#: Where nova puts the network data resetnetwork reads: one JSON entry per interface (keyed by the MAC without
#: colons), and the host name as plain text.
NETWORKING = "vm-data/networking"
HOSTNAME = "vm-data/hostname"

#: Reply node values stay far below xenstored's 2048-byte node limit.
MAX_MESSAGE = 1000
#: xenstored's limit on a path relative to the domain's home (XENSTORE_REL_PATH_MAX). ``data/guest`` is one
#: character longer than ``data/host``, so a request id that just fits its request path cannot be answered.
MAX_RELATIVE_PATH = 2048
UNANSWERABLE = f"Request id is too long to answer: its reply path would exceed XenStore's {MAX_RELATIVE_PATH} bytes"
MAX_NAME_IN_MESSAGE = 64

MALFORMED = "Request is malformed"
MISSING_NAME = "Request is missing 'name' key"
#: Deeper JSON is refused: no command takes more than a few levels, and the depth must never reach the
#: interpreter's recursion limit anywhere a request travels (parsing, journaling, hashing).
MAX_DEPTH = 32


@dataclasses.dataclass(frozen=True)
class Request:
    """A request as read from XenStore. ``value`` may hold a secret: never log or journal it whole."""

    request_id: str
    name: str | None
    value: Any = dataclasses.field(repr=False)
    digest: str
    #: Set when the request cannot run: the error reply it gets instead.
    rejection: CommandError | None = None


def digest(body: bytes) -> str:
    """The request's content digest: recognises a re-sent call without keeping its content."""
    return hashlib.sha256(body).hexdigest()


def for_log(name: str) -> str:
    """A command name or request id as quoted in a message or the log: bounded, and printable whatever the
    host sent."""
    text = name if len(name) <= MAX_NAME_IN_MESSAGE else name[:MAX_NAME_IN_MESSAGE] + "..."
    # unicode_escape turns control characters and non-ASCII into escapes: no line breaks in replies or logs.
    return text.encode("unicode_escape").decode("ascii")


def parse(request_id: str, body: bytes) -> Request:
    """Parse a request body. A bad body yields a Request carrying its rejection, never an exception."""
    body_digest = digest(body)

    def rejected(message: str, name: str | None = None) -> Request:
        return Request(request_id, name, None, body_digest, RequestRejected("500", message))

    try:
        document = jsontext.loads(body, MAX_DEPTH)
    except jsontext.TooDeep as exc:
        return rejected(f"{MALFORMED}: {exc}")
    except ValueError:  # also not UTF-8, and huge integers: int() refuses over 4300 digits
        return rejected(MALFORMED)
    problem = _unusable(document)
    if problem:
        return rejected(f"{MALFORMED}: {problem}")
    if not isinstance(document, dict):
        return rejected(f"{MALFORMED}: expected a JSON object, got {type(document).__name__}")
    if "name" not in document:
        return rejected(MISSING_NAME)
    name = document["name"]
    if not isinstance(name, str):
        return rejected(f"{MALFORMED}: 'name' must be a string, got {type(name).__name__}")
    return Request(request_id, name, document.get("value"), body_digest)


def answerable(request_id: str) -> bool:
    """Whether a reply to this request id can be written (its path fits XenStore's limit)."""
    return len(GUEST_DIR) + 1 + len(request_id) <= MAX_RELATIVE_PATH


def _unusable(document: Any) -> str:
    """Why a parsed document cannot travel further, or "".

    JSON escapes can spell lone UTF-16 surrogates (``"\\ud800"``), which are not Unicode: no UTF-8 text,
    journal row or hash can hold them. The walk is iterative (the depth is bounded before parsing anyway).
    """
    pending: list[Any] = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "text is not valid Unicode (a lone surrogate)"
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return ""


def unknown_command(name: str) -> RequestRejected:
    return RequestRejected("404", f"No such agent command '{for_log(name)}'")


def refused_command(name: str) -> RequestRejected:
    return RequestRejected("403", f"Agent command '{for_log(name)}' is refused by this agent's policy")


def reply(returncode: str, message: str) -> dict[str, str]:
    """A reply object; the message is bounded so the node stays within XenStore's limits."""
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    return {"returncode": str(returncode), "message": message}


def encode(obj: Any) -> str:
    """JSON with ASCII escapes: pyxs only writes non-empty 7-bit ASCII values."""
    return json.dumps(obj, ensure_ascii=True, separators=(", ", ": "))
