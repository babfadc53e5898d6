"""The host side of the protocol, as nova's dom0 plugin speaks it.

A domain that does not exist (no ``name`` node) is refused before anything is written. Otherwise write
``data/host/<uuid>``; then, until the timeout, read ``data/guest/<uuid>`` every 0.5 s and check that
the domain's ``name`` node still exists. On timeout, or when the domain is gone (it rebooted and got a new
domid), delete the request and fail with ``TIMEOUT: ...`` or ``REBOOT: ...``, as the plugin does. Replies
are left in ``data/guest``: the host side never removes them (the agent collects its own).

``reset_network`` writes nova's network data into ``protocol.NETWORKING`` and ``protocol.HOSTNAME``
(``vm-data``) before it calls ``resetnetwork``; an operator's file of that data is read by
``agent.network.description``, which ``network render`` uses too.

XenStore is named here for the type checker only, so importing this module (as ``agent.cli.host`` does for
the timeouts) does not import pyxs.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from agent import crypto, jsontext, protocol
from agent.errors import HostCallError
from agent.network.description import check_key
from agent.protocol import HOSTNAME, NETWORKING

if TYPE_CHECKING:
    from agent.xenstore import XenStore

POLL_INTERVAL = 0.5
#: nova's default wait for resetnetwork (``agent_resetnetwork_timeout``), and for every other call.
RESET_NETWORK_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0
#: A reply is a flat object; deeper text is refused before it is parsed.
REPLY_DEPTH = 8


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
        colons; see ``agent.network.description``). Every earlier child of ``vm-data/networking`` is removed
        first, so the guest reads exactly these entries; each entry is written as JSON (a string is taken as
        JSON text already). ``hostname`` goes to ``vm-data/hostname`` as plain text, or the node is removed
        when it is None or empty. Then ``resetnetwork`` is called with the value ``""``; once the agent has
        answered, ``vm-data/hostname`` is removed again, as nova does right after the call. (When the call
        fails with TIMEOUT or REBOOT the data stays, as it does with nova.)
        """
        for key in networking:
            check_key(key)
        self.check_domain()
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

    def check_domain(self) -> None:
        """Fail unless the domain exists (its ``name`` node is there), before anything is written: dom0 may
        write anywhere, and a request to a domid that does not exist would create that domain's tree."""
        if not self.xenstore.exists("name"):
            raise HostCallError(f"no domain at {self.xenstore.domain_path or 'this domain path'}: its 'name' "
                                "node does not exist; check the domid ('xenstore-ls /local/domain' lists the "
                                "domains, 'xl list' their ids)")

    def raw(self, body: str, timeout: float = CALL_TIMEOUT, request_id: str | None = None) -> dict[str, Any]:
        """Send an arbitrary request body (for testing how the agent treats bad requests)."""
        request_id = request_id or str(uuid.uuid4())
        request_path = f"{protocol.HOST_DIR}/{request_id}"
        self.check_domain()
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


def decode_reply(answer: bytes) -> dict[str, Any]:
    """The reply object, or an error naming what the agent wrote instead."""
    try:
        reply = jsontext.loads(answer, REPLY_DEPTH)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HostCallError(f"the agent's reply is not JSON: {answer[:100]!r}") from exc
    if not isinstance(reply, dict):
        raise HostCallError(f"the agent's reply is not a JSON object: {answer[:100]!r}")
    return reply
