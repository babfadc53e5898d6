"""The host side of the protocol, as nova's dom0 plugin speaks it.

Write ``data/host/<uuid>``; then, until the timeout, read ``data/guest/<uuid>`` every 0.5 s and check that
the domain's ``name`` node still exists. On timeout, or when the domain is gone (it rebooted and got a new
domid), delete the request and fail with ``TIMEOUT: ...`` or ``REBOOT: ...``, as the plugin does. Replies
are left in ``data/guest``: the host side never removes them (the agent collects its own).

``reset_network`` writes nova's network data into ``vm-data`` before it calls ``resetnetwork``, and
``load_network_description`` reads that data from an operator's file (the format is in its docstring); the
``network render`` dry run reads the same files through it.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from agent import crypto, protocol
from agent.errors import HostCallError, NetworkDataError
from agent.network import model
from agent.xenstore import XenStore

POLL_INTERVAL = 0.5
#: Where nova puts the network data resetnetwork reads: one JSON entry per interface, and the host name.
NETWORKING = "vm-data/networking"
HOSTNAME = "vm-data/hostname"
#: nova's default wait for resetnetwork (``agent_resetnetwork_timeout``), and for every other call.
RESET_NETWORK_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0
#: A ``vm-data/networking`` key: the MAC without colons, as nova writes it (``vif['address'].replace(':', '')``).
_KEY = re.compile(r"[0-9A-Fa-f]{12}")


class Host:
    """Calls into one guest domain through XenStore, from dom0's side."""

    def __init__(self, xenstore: XenStore, poll_interval: float = POLL_INTERVAL) -> None:
        self.xenstore = xenstore
        self.poll_interval = poll_interval

    def call(self, name: str, value: Any = "", timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        """Send ``{"name": name, "value": value}`` and wait for the agent's reply."""
        return self.raw(protocol.encode({"name": name, "value": value}), timeout)

    def key_exchange(self, timeout: float = CALL_TIMEOUT) -> str:
        """``keyinit`` as nova does it: send a decimal public key, require ``"D0"``; return the shared secret."""
        private = crypto.private_key()
        reply = self.call("keyinit", str(crypto.public_key(private)), timeout)
        if reply.get("returncode") != "D0":
            raise HostCallError(f"keyinit failed: the agent answered {reply.get('returncode')!r}: "
                                f"{reply.get('message')}")
        try:
            peer = crypto.parse_public_key(reply.get("message"))
        except crypto.KeyExchangeError as exc:
            raise HostCallError(f"keyinit failed: the agent's reply is not a usable public key ({exc})") from None
        return crypto.shared_secret(private, peer)

    def set_password(self, password: str, derivation: str = "sha256", timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        """keyinit, then ``password`` with ``password + "\n"`` encrypted as ``openssl enc`` does it.

        ``derivation`` is the key derivation of the host's OpenSSL: "sha256" (OpenSSL 1.1.0 and later,
        nova's default there) or "md5" (older hosts).
        """
        secret = self.key_exchange(timeout)
        return self.call("password", crypto.encrypt_password(password, secret, derivation), timeout)

    def inject_file(self, path: str, contents: bytes, format: Literal["legacy", "new"] = "new",
                    timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        """Write ``contents`` to ``path`` in the guest, sending what the dom0 plugin sends (see
        ``file_request``). nova injects the SSH key so: ``"\\n<key>\\n"`` to ``/root/.ssh/authorized_keys``."""
        name, value = file_request(path, contents, format)
        return self.call(name, value, timeout)

    def reset_network(self, networking: Mapping[str, Any], hostname: str | None = None,
                      timeout: float = RESET_NETWORK_TIMEOUT) -> dict[str, Any]:
        """Reconfigure the guest's network as nova's XenAPI driver does, and return the agent's reply.

        ``networking`` is ``{key: entry}`` as ``vm-data/networking`` holds it (the key is the MAC without
        colons; see ``load_network_description``). Every earlier child of ``vm-data/networking`` is removed
        first, so the guest reads exactly these entries; each entry is written as JSON (a string is taken as
        JSON text already). ``hostname`` goes to ``vm-data/hostname`` as plain text, or the node is removed
        when it is None or empty. Then ``resetnetwork`` is called with the value ``""``; once the agent has
        answered, ``vm-data/hostname`` is removed again, as nova does right after the call. (When the call
        fails with TIMEOUT or REBOOT the data stays, as it does with nova.)
        """
        for key in networking:
            _check_key(key)
        self.xenstore.delete(NETWORKING)
        for key, entry in networking.items():
            self.xenstore.write(f"{NETWORKING}/{key}", entry if isinstance(entry, str) else protocol.encode(entry))
        if hostname:
            self.xenstore.write(HOSTNAME, hostname)
        else:
            self.xenstore.delete(HOSTNAME)
        reply = self.call("resetnetwork", "", timeout)
        self.xenstore.delete(HOSTNAME)
        return reply

    def raw(self, body: str, timeout: float = CALL_TIMEOUT, request_id: str | None = None) -> dict[str, Any]:
        """Send an arbitrary request body (for testing how the agent treats bad requests)."""
        request_id = request_id or str(uuid.uuid4())
        request_path = f"{protocol.HOST_DIR}/{request_id}"
        self.xenstore.write(request_path, body)
        deadline = time.monotonic() + timeout
        while True:
            answer = self.xenstore.read(f"{protocol.GUEST_DIR}/{request_id}")
            if answer is not None:
                return decode_reply(answer)
            if not self.xenstore.exists("name"):
                self.xenstore.delete(request_path)
                raise HostCallError(f"REBOOT: domain {self.xenstore.domain_path} no longer present")
            if time.monotonic() >= deadline:
                self.xenstore.delete(request_path)
                raise HostCallError(f"TIMEOUT: no reply to {request_id} within {timeout:g} s; "
                                    "is the agent running in the guest?")
            time.sleep(self.poll_interval)


def file_request(path: str, contents: bytes, format: Literal["legacy", "new"] = "new") -> tuple[str, Any]:
    """The command name and value of a file injection, as the dom0 plugin builds them.

    ``"new"``: ``file_inject`` with ``{"b64_path": ..., "b64_file": ...}``, each base64 on its own, which the
    plugin sends when ``features`` lists ``file_inject``. ``"legacy"``: ``injectfile`` with base64 of
    ``"<path>,<contents>"``, which it sends to an agent that lists only ``injectfile``. (The plugin asks
    ``features`` which to send; here the caller says.) The path is sent as UTF-8.
    """
    raw_path = path.encode("utf-8")
    if format == "new":
        return "file_inject", {"b64_path": _b64(raw_path), "b64_file": _b64(contents)}
    if format == "legacy":
        return "injectfile", _b64(raw_path + b"," + contents)
    raise ValueError(f"format must be 'legacy' or 'new', not {format!r}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def load_network_description(text: str) -> tuple[dict[str, Any], str | None]:
    """The ``vm-data/networking`` entries (``{key: entry}``) and the host name (None: none given) that a
    network description holds; a NetworkDataError saying what is wrong otherwise.

    The description is JSON, in one of two forms:

    - an object ``{"networking": ..., "hostname": "web-1"}``, whose ``hostname`` is optional and whose
      ``networking`` is either an object keyed as ``vm-data/networking`` is (each key the MAC without colons,
      each value nova's entry for that interface) or a list of nova's entries;
    - a bare list of nova's entries.

    The key of an entry in a list is its ``mac`` with the colons removed, as nova derives it; a key that is
    given must be that MAC's 12 hex digits. Every entry is then checked as the agent will check it (addresses,
    netmasks, routes, name servers, the host name), for a guest that has every MAC named, so a mistake is
    found here and not in the guest. Which interfaces a guest has is not known here: ``network render`` checks
    that against the guest.
    """
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
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
            key = mac.replace(":", "") if isinstance(mac, str) else ""
            if not _KEY.fullmatch(key):
                raise NetworkDataError(f"{where} has no valid 'mac' (six hex pairs, colon-separated; got {mac!r:.40})")
            if key.lower() in (k.lower() for k in entries):
                raise NetworkDataError(f"{where} repeats the MAC {mac} of an earlier entry")
            entries[key] = entry
    elif isinstance(networking, dict):
        entries = networking
        for key, entry in entries.items():
            _check_key(key)
            if not isinstance(entry, dict):
                raise NetworkDataError(f"networking[{key!r}] is not a JSON object")
            mac = entry.get("mac")
            if isinstance(mac, str) and model.normal_mac(mac) != key.lower():
                raise NetworkDataError(f"networking[{key!r}] is the entry of MAC {mac:.40}; its key must be that MAC "
                                       "without colons")
    else:
        raise NetworkDataError("'networking' must be an object keyed by MAC without colons, or a list of entries")
    if not entries:
        raise NetworkDataError("'networking' names no interface; give nova's entry for each interface to configure")
    return entries


def _check_key(key: str) -> None:
    if not _KEY.fullmatch(key):
        raise NetworkDataError(f"networking key {key!r:.40} is not a MAC without colons (12 hex digits), as nova "
                               "writes the keys of vm-data/networking")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise NetworkDataError(f"the description repeats the key {key!r:.40} in one object")
        document[key] = value
    return document


def _no_constant(name: str) -> Any:
    raise NetworkDataError(f"the description holds {name}, which is not JSON")


def decode_reply(answer: bytes) -> dict[str, Any]:
    """The reply object, or an error naming what the agent wrote instead."""
    try:
        reply = json.loads(answer.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HostCallError(f"the agent's reply is not JSON: {answer[:100]!r}") from exc
    if not isinstance(reply, dict):
        raise HostCallError(f"the agent's reply is not a JSON object: {answer[:100]!r}")
    return reply
