"""A network description: the network data nova writes into ``vm-data``, as an operator gives it in a file.

``host resetnetwork`` writes a description into ``vm-data`` as nova does, and ``network render`` renders the
files resetnetwork would write for one; both read it with ``load_network_description``, and ``Host`` checks
the keys it writes with ``check_key``. The format is stated here once; ``FORMAT`` quotes its paragraph for the
commands' help:

The description is JSON: an object {"networking": ..., "hostname": "web-1"} whose 'hostname' is optional and
whose 'networking' is either an object keyed as vm-data/networking is (the MAC without colons) with nova's
entry for each interface as the value, or a list of nova's entries (each keyed by its 'mac' with the colons
removed, as nova does). A bare list of entries is accepted too. An entry is what nova writes, e.g.
{"label": "public", "mac": "fa:16:3e:0a:1b:2c", "gateway": "203.0.113.1", "ips": [{"ip": "203.0.113.10",
"netmask": "255.255.255.0", "enabled": "1"}], "dns": ["198.51.100.53"]}.

A key that is given must be its entry's MAC without colons (12 hex digits, as nova writes the keys of
``vm-data/networking``). Every entry is then checked as the agent will check it (addresses, netmasks, routes,
name servers, the host name) for a guest that has every MAC named, so a mistake is found here and not in the
guest; which interfaces a guest has is not known here (``network render`` matches them itself).

The module is pure: it imports nothing of the agent's but ``agent.errors`` and ``agent.network.model`` (no
XenStore, no host side, no platform), so ``network render`` reads a description without them. ``mac_key``
and ``is_interface_name`` are the one MAC and interface-name validators of the command line.
"""

from __future__ import annotations

import re
from typing import Any

from agent import jsontext
from agent.errors import NetworkDataError
from agent.network import model

#: How the paragraph of this docstring that states the format begins.
FORMAT_START = "The description is JSON"
#: A MAC as the description and ``--interfaces`` may spell it: six hex pairs in any case, separated by colons
#: (or hyphens or dots, which the agent also accepts) or not at all.
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?:[:.-]?[0-9A-Fa-f]{2}){5}")
_SEPARATORS = re.compile(r"[:.-]")
#: An interface name the agent applies a network to (as ``agent.platform.network`` checks it, which this pure
#: package cannot import): 1 to 15 characters, no '/', ':' or white space, not starting with '-'.
INTERFACE_NAME = re.compile(r"[^-/\s:][^/\s:]{0,14}")


def _paragraph(doc: str | None, start: str) -> str:
    for paragraph in (doc or "").split("\n\n"):
        if paragraph.startswith(start):
            return " ".join(paragraph.split())
    # Only under python -OO, which drops docstrings.
    return "The format of a description is in the docstring of agent.network.description."


#: The format paragraph of this module's docstring, on one line.
FORMAT = _paragraph(__doc__, FORMAT_START)


def mac_key(text: str) -> str | None:
    """The ``vm-data/networking`` key of the MAC ``text``: its 12 hex digits, case kept, as nova derives it
    (``address.replace(':', '')``); None when ``text`` is no MAC. ``.lower()`` of it is the MAC the model
    matches interfaces by."""
    text = text.strip()
    return _SEPARATORS.sub("", text) if _MAC.fullmatch(text) else None


def is_interface_name(name: str) -> bool:
    """Whether the agent would apply a network to an interface of this name."""
    return INTERFACE_NAME.fullmatch(name) is not None


def check_key(key: str) -> None:
    """A NetworkDataError unless ``key`` is a ``vm-data/networking`` key: a MAC without separators."""
    if mac_key(key) != key:
        raise NetworkDataError(f"networking key {key!r:.40} is not a MAC without colons (12 hex digits), as nova "
                               "writes the keys of vm-data/networking")


def load_network_description(text: str) -> tuple[dict[str, Any], str | None]:
    """The ``vm-data/networking`` entries (``{key: entry}``) and the host name (None: none given) of the
    description ``text`` (the format is in the module's docstring); a NetworkDataError saying what is wrong
    otherwise."""
    try:
        document = jsontext.loads(text, model.MAX_DEPTH, object_pairs_hook=_unique_keys,
                                  parse_constant=_no_constant)
    except jsontext.TooDeep:
        raise NetworkDataError("the description is nested too deeply to be network data") from None
    except ValueError as exc:
        raise NetworkDataError(f"the description is not JSON ({exc})") from None
    hostname: Any = None
    if isinstance(document, dict):
        unknown = sorted(set(document) - {"networking", "hostname"})
        if unknown:
            raise NetworkDataError(f"unknown key {unknown[0]!r} in the description; it holds 'networking' and, "
                                   "optionally, 'hostname'")
        if "networking" not in document:
            raise NetworkDataError("the description has no 'networking' (an object keyed by MAC without colons, "
                                   "or a list of nova's entries)")
        networking, hostname = document["networking"], document.get("hostname")
    elif isinstance(document, list):
        networking = document
    else:
        raise NetworkDataError("the description must be a JSON object with 'networking', or a list of entries")
    if hostname is not None and not isinstance(hostname, str):
        raise NetworkDataError("'hostname' must be a string")
    entries = _entries(networking)
    macs = [model.normal_mac(entry["mac"]) for entry in entries.values() if isinstance(entry.get("mac"), str)]
    model.parse(entries, hostname, {mac: model.colon_mac(mac) for mac in macs})
    return entries, (hostname.strip() or None) if hostname is not None else None


def _entries(networking: Any) -> dict[str, Any]:
    if isinstance(networking, list):
        entries: dict[str, Any] = {}
        for index, entry in enumerate(networking):
            where = f"networking[{index}]"
            if not isinstance(entry, dict):
                raise NetworkDataError(f"{where} is not a JSON object")
            mac = entry.get("mac")
            key = mac_key(mac) if isinstance(mac, str) else None
            if key is None:
                raise NetworkDataError(f"{where} has no valid 'mac' (six hex pairs, colon-separated; got {mac!r:.40})")
            if key.lower() in (k.lower() for k in entries):
                raise NetworkDataError(f"{where} repeats the MAC {mac} of an earlier entry")
            entries[key] = entry
    elif isinstance(networking, dict):
        entries = networking
        for key, entry in entries.items():
            check_key(key)
            if not isinstance(entry, dict):
                raise NetworkDataError(f"networking[{key!r}] is not a JSON object")
            mac = entry.get("mac")
            given = mac_key(mac) if isinstance(mac, str) else None
            if given is not None and given.lower() != key.lower():
                raise NetworkDataError(f"networking[{key!r}] is the entry of MAC {mac:.40}; its key must be that MAC "
                                       "without colons")
    else:
        raise NetworkDataError("'networking' must be an object keyed by MAC without colons, or a list of entries")
    if not entries:
        raise NetworkDataError("'networking' names no interface; give nova's entry for each interface to configure")
    return entries


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise NetworkDataError(f"the description repeats the key {key!r:.40} in one object")
        document[key] = value
    return document


def _no_constant(name: str) -> Any:
    raise NetworkDataError(f"the description holds {name}, which is not JSON")
