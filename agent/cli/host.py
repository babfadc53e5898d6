"""``host``: the host side of the protocol from the command line, one subcommand per call nova makes.

The subcommands are the table ``CALLS``: each row names a call, its help, the arguments it takes, how they
become a request and how long nova waits for its reply. ``cmd_host`` is their one dispatcher: it connects to
XenStore, sends whatever request the row built, prints the reply and exits 0 on success and 1 on an error reply. A
request is one of five kinds, each of which knows how it is sent: ``Call`` (``{"name", "value"}``, as nova sends
nearly everything), ``PasswordSet`` (nova's two calls, keyinit then password), ``FileInjection`` (a file, as
injectfile or file_inject), ``NetworkReset`` (nova's network data into ``vm-data``, then resetnetwork) and ``Raw`` (a
body exactly as given, for trying bad requests). A new host call is one more row, and a new kind only if it is not
sent as a plain call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

from agent import config, crypto
from agent.cli import network, output
from agent.cli.network import FROM_STDIN
from agent.errors import AgentError
from agent.host import CALL_TIMEOUT, RESET_NETWORK_TIMEOUT, Host  # agent.host imports no pyxs: --help stays light
from agent.network.description import FORMAT

if TYPE_CHECKING:
    from agent.cli.app import Subparsers

#: What the agent answers when a call succeeded (keyinit's "D0" carries its public key).
SUCCESS = ("0", "D0")


class Request(Protocol):
    def send(self, host: Host, timeout: float) -> dict[str, Any]:
        """Send the request through ``host`` and return the agent's reply."""


@dataclasses.dataclass(frozen=True)
class Call:
    """``{"name": name, "value": value}``."""

    name: str
    value: Any

    def send(self, host: Host, timeout: float) -> dict[str, Any]:
        return host.call(self.name, self.value, timeout=timeout)


@dataclasses.dataclass(frozen=True)
class PasswordSet:
    """keyinit, then the password encrypted under the shared secret; the password is kept out of reprs."""

    password: str = dataclasses.field(repr=False)
    derivation: str

    def send(self, host: Host, timeout: float) -> dict[str, Any]:
        return host.set_password(self.password, self.derivation, timeout=timeout)


@dataclasses.dataclass(frozen=True)
class FileInjection:
    """A file to write in the guest; its contents are kept out of reprs (they may be keys)."""

    path: str
    contents: bytes = dataclasses.field(repr=False)
    format: Literal["legacy", "new"]

    def send(self, host: Host, timeout: float) -> dict[str, Any]:
        return host.inject_file(self.path, self.contents, self.format, timeout=timeout)


@dataclasses.dataclass(frozen=True)
class NetworkReset:
    """nova's network data, written into ``vm-data`` before resetnetwork is called."""

    networking: Mapping[str, Any]
    hostname: str | None

    def send(self, host: Host, timeout: float) -> dict[str, Any]:
        return host.reset_network(self.networking, self.hostname, timeout=timeout)


@dataclasses.dataclass(frozen=True)
class Raw:
    """A body written exactly as given, JSON or not."""

    body: str

    def send(self, host: Host, timeout: float) -> dict[str, Any]:
        return host.raw(self.body, timeout=timeout)


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _call_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument("value", nargs="?", default="", help="JSON value, or a plain string")


def _password_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("new_password", metavar="NEWPASS", nargs="?", default=FROM_STDIN,
                        help="the new password, or '-' to read it from standard input (the default)")
    parser.add_argument("--digest", choices=crypto.DERIVATIONS, default="sha256",
                        help="key derivation of the host's OpenSSL: sha256 (1.1.0 and later) or md5 (older)")


def _password_request(args: argparse.Namespace) -> PasswordSet:
    given = args.new_password
    if given == FROM_STDIN:
        if sys.stdin.isatty():
            import getpass

            given = getpass.getpass("New password: ")
        else:
            given = sys.stdin.readline().rstrip("\r\n")
    if not given:
        raise AgentError("no password given; pass NEWPASS, or write it to standard input")
    return PasswordSet(given, args.digest)


def _inject_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the file's absolute path in the guest")
    parser.add_argument("file", metavar="FILE", nargs="?", default=FROM_STDIN,
                        help="the local file whose contents to send, or '-' to read them from standard input "
                             "(the default)")
    parser.add_argument("--format", choices=("new", "legacy"), default="new",
                        help='new: file_inject {"b64_path", "b64_file"}, what nova sends when features lists it '
                             '(the default); legacy: injectfile, base64 of "<path>,<contents>"')


def _inject_request(args: argparse.Namespace) -> FileInjection:
    if args.file == FROM_STDIN:
        contents = sys.stdin.buffer.read()
    else:
        try:
            with open(args.file, "rb") as fh:
                contents = fh.read()
        except OSError as exc:
            raise AgentError(f"cannot read {args.file}: {exc.strerror}; give a readable file, or '-' for "
                             "standard input") from None
    return FileInjection(args.path, contents, args.format)


def _reset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="FILE",
                        help="the network description, or '-' to read it from standard input")


def _reset_request(args: argparse.Namespace) -> NetworkReset:
    return NetworkReset(*network.read_description(args.input))


def _kms_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", metavar="HOST:PORT",
                        help="the KMS server; an IPv6 address in brackets: [2001:db8::5]:1688")


def _raw_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("body")


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class HostCall:
    """One ``host`` subcommand: its name and help, the arguments it adds, and the request they make."""

    name: str
    help: str
    request: Callable[[argparse.Namespace], Request]
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    description: str | None = None
    #: The default of --timeout for this call: how long nova waits for it.
    timeout: float = CALL_TIMEOUT


CALLS = (
    HostCall("version", "ask the agent's version", lambda args: Call("version", "agent")),
    HostCall("features", "ask which commands the agent offers", lambda args: Call("features", "")),
    HostCall("call", "send {name, value}", lambda args: Call(args.name, _json_or_text(args.value)),
             _call_arguments),
    HostCall("password", "set the guest's password (keyinit, then password)", _password_request,
             _password_arguments, description=(
        "Set the guest's administrator password as nova does: keyinit with a decimal public key, check the "
        "'D0' reply, then send password + newline encrypted with AES-128-CBC under the shared secret, as "
        "single-line base64. Without NEWPASS (or with '-') the password is read from standard input, "
        "which keeps it out of the process list.")),
    HostCall("injectfile", "write a file into the guest as nova does (file_inject, or injectfile with "
             "--format legacy)", _inject_request, _inject_arguments, description=(
        "Write FILE's contents to PATH in the guest as nova's dom0 plugin does. A XenStore request carries "
        "under 4 KiB, so about 2.9 KiB of contents at most.")),
    HostCall("resetnetwork", "write nova's network data into vm-data and call resetnetwork", _reset_request,
             _reset_arguments, timeout=RESET_NETWORK_TIMEOUT, description=(
        "Reconfigure the guest's network as nova's XenAPI driver does: remove every earlier entry under "
        "vm-data/networking, write one JSON entry per interface there and the host name (if given) to "
        "vm-data/hostname, call resetnetwork with the value \"\", and remove vm-data/hostname again once the "
        "agent has answered. nova waits 60 s for this call, the default --timeout here. "
        + FORMAT)),
    HostCall("kmsactivate", "point a Windows guest at a KMS server and activate it",
             lambda args: Call("kmsactivate", args.server), _kms_arguments, description=(
        "Send kmsactivate with HOST:PORT, as the earlier Windows agent took it: the agent runs slmgr /skms "
        "HOST:PORT, then slmgr /ato. Only a Windows agent offers it.")),
    HostCall("raw", "send BODY exactly as given (for testing bad requests)", lambda args: Raw(args.body),
             _raw_arguments),
)


def register(commands: Subparsers) -> None:
    host = commands.add_parser("host", help="call the agent as the host does", description=(
        "The host side of the protocol, as nova's dom0 plugin speaks it: write data/host/<uuid>, poll "
        "data/guest/<uuid> every 0.5 s, delete the request on timeout or when the domain disappears. "
        "Exits 0 when the agent answers success, 1 when it answers an error."))
    host.add_argument("--xenstore", metavar="ADDRESS",
                      help="'unix:PATH' (default: from XENSTORED_PATH) or 'xenbus[:PATH]'")
    host.add_argument("--domain-path", required=True, metavar="PATH", help="the guest's home, /local/domain/N")
    host.add_argument("--timeout", type=float, metavar="SECONDS",
                      help=f"seconds to wait for the reply (default, as nova waits: {RESET_NETWORK_TIMEOUT:g} for "
                           f"resetnetwork, {CALL_TIMEOUT:g} for every other call)")
    output.json_flag(host, "print the reply as JSON")
    calls = host.add_subparsers(title="calls", metavar="CALL", required=True)
    for call in CALLS:
        parser = calls.add_parser(call.name, help=call.help, description=call.description)
        call.arguments(parser)
        parser.set_defaults(handler=cmd_host, request=call.request, call_timeout=call.timeout)


def cmd_host(args: argparse.Namespace, out: TextIO) -> int:
    from agent.xenstore import XenStore

    address = args.xenstore or config.Config().xenstore_address
    request: Request = args.request(args)
    timeout = args.call_timeout if args.timeout is None else args.timeout
    with XenStore(address, args.domain_path) as xenstore:
        reply = request.send(Host(xenstore), timeout)
    if args.json:
        output.as_json(reply, out)
    else:
        output.fields([("returncode", reply.get("returncode")), ("message", reply.get("message"))], out)
    return 0 if reply.get("returncode") in SUCCESS else 1
