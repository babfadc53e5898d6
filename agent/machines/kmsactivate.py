"""kmsactivate: point a Windows guest at the KMS server the host names, then activate it (docs/protocol.md,
"kmsactivate").

The value is ``"host:port"`` (an IPv6 address in brackets), as the earlier Windows agent took it. The work is
the licensing port's (``agent.platform.windows_kms``): ``slmgr /skms host:port``, then ``slmgr /ato``. Only a
Windows agent has that port, so only there does ``features`` list the command.

    received --configure--> setting_server --server_set--> activating --activated--> done
    received, setting_server, activating --fail--> failed

Validate, then act. ``received`` checks the value without running anything (it goes on a command line: a bad
one is a "500" that says what is wrong) and journals the server as working data. ``setting_server`` runs
``/skms`` and journals slmgr's answer with ``server_set``; ``activating`` runs ``/ato`` and answers.

Recovery resumes every state, and that is truthful because both steps may run twice: ``/skms`` stores a name
and a port, and storing the same ones again changes nothing; ``/ato`` asks the KMS server for an activation,
which an activated client asks for again by itself every few days. So a crash between ``/skms`` and the
journaling of ``server_set`` runs ``/skms`` once more, then ``/ato``; a crash during ``/ato`` runs ``/ato`` once
more. Two steps rather than one keep the reply true after a crash: a failed ``/ato`` after a journaled
``server_set`` says the server was set, and the journal shows which step failed.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from agent.errors import CommandFailed, PlatformError
from agent.machines.base import RESUME, Command, Event
from agent.platform.windows_kms import BadServer, KmsServer, parse_server

if TYPE_CHECKING:
    from agent.platform.windows_kms import Licensing

log = logging.getLogger(__name__)

STATES = ["received", "setting_server", "activating", "done"]
TRANSITIONS = [
    {"trigger": "configure", "source": "received", "dest": "setting_server"},
    {"trigger": "server_set", "source": "setting_server", "dest": "activating"},
    {"trigger": "activated", "source": "activating", "dest": "done"},
]
TERMINAL = frozenset({"done"})
RECOVERY = {
    # Nothing has run: check the value again.
    "received": RESUME,
    # /skms may have run: it stores the same name and port again, which changes nothing.
    "setting_server": RESUME,
    # /ato may have run: asking an activated client to activate only renews its activation.
    "activating": RESUME,
}


@dataclasses.dataclass(frozen=True)
class KmsData:
    """The checked server (``host``, ``port``) and slmgr's answer to ``/skms``."""

    host: str = ""
    port: int = 0
    set_message: str = ""

    @property
    def server(self) -> KmsServer:
        return KmsServer(self.host, self.port)


class KmsActivate(Command):
    """``kmsactivate``: ``slmgr /skms host:port``, then ``slmgr /ato``."""

    NAME = "kmsactivate"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY
    Data = KmsData
    NEEDS = frozenset({"licensing"})

    def on_enter_received(self, event: Event) -> None:
        try:
            server = parse_server(self.request_value())
        except BadServer as exc:
            raise CommandFailed("500", f"Invalid kmsactivate value: {exc}") from None
        self._licensing()  # an agent without the port fails here, before anything is journaled as under way
        self.advance("configure", detail={"server": server.argument()}, data=KmsData(server.host, server.port))

    def on_enter_setting_server(self, event: Event) -> None:
        data: KmsData = self.data
        server = data.server.argument()
        try:
            message = self._licensing().set_server(data.server)
        except PlatformError as exc:
            raise CommandFailed("500", f"Setting the KMS server to {server} failed: {exc}") from None
        log.info("command %d %s: KMS server set to %s", self.record.id, self.NAME, server)
        self.advance("server_set", detail={"slmgr": message, "again": self.resumed},
                     data=dataclasses.replace(data, set_message=message))

    def on_enter_activating(self, event: Event) -> None:
        data: KmsData = self.data
        server = data.server.argument()
        try:
            message = self._licensing().activate()
        except PlatformError as exc:
            raise CommandFailed("500", f"The KMS server was set to {server}, but activation failed: {exc}") from None
        log.info("command %d %s: activated against %s", self.record.id, self.NAME, server)
        self.finish("activated", "0", f"KMS server set to {server}; Windows activated" + (f" ({message})" if message
                                                                                          else ""),
                    detail={"slmgr": message, "again": self.resumed})

    def on_give_up(self, attempts: int) -> None:
        """The crash-loop reply says how far the command got: after ``server_set`` the server is set."""
        if self.state == "activating":
            server = self.data.server.argument()
            self.finish("fail", "500", f"{self.interrupted(attempts)}; the KMS server was set to {server}, but "
                                       "activation was not confirmed; not retrying it, to stop a crash loop",
                        detail={"error": "crash_loop", "attempts": attempts})
            return
        super().on_give_up(attempts)

    def _licensing(self) -> Licensing:
        licensing: Licensing = self.ctx.ports.require("licensing")
        return licensing
