"""Windows licensing: point the guest at a KMS server and activate it, through ``slmgr.vbs`` under ``cscript``.

This is the ``licensing`` port (``agent.ports``), which the ``kmsactivate`` machine needs; only a Windows agent
has one. Each step is one run of ``cscript //nologo %SystemRoot%\\System32\\slmgr.vbs <option>``, bounded in time
(``agent.platform.base.run_bounded``): ``/skms host:port`` (``set_server``), then ``/ato`` (``activate``).

Facts about slmgr.vbs this module relies on (the script as Windows ships it):

- ``/skms <Name[:Port] | : port>`` sets the KMS machine the client uses; "IPv6 address must be specified in the
  format [hostname]:port". It calls ``SoftwareLicensingService.SetKeyManagementServiceMachine`` (and the port's
  setter), which store the name and port: running it again with the same value changes nothing, so the step
  can be repeated after a crash. On success it prints ``Key Management Service machine name set to <KMS>
  successfully.``
- ``/ato`` activates the installed products: ``Activating <product> (<id>) ...``, then ``Product activated
  successfully.`` Asking a KMS client that is already activated to activate again only renews its
  activation, which KMS clients do by themselves every few days; the step can be repeated too.
- Every output goes through ``WScript.Echo``, which cscript writes to standard output; cscript's own errors
  (no such script, a script error) go to standard error.
- An error of a WMI call ends the script through ``QuitIfError``: it prints ``Error: 0x<HRESULT> <text>``
  (e.g. ``Error: 0xC004F074 The Software Licensing Service reported that the computer could not be activated.
  No Key Management Service (KMS) could be contacted. ...``), preceded, when slmgr has no text for the code, by
  ``On a computer running Microsoft Windows non-core edition, run 'slui.exe 0x2a 0x<code>' ...``, and quits
  with the HRESULT as the exit status (``WScript.Quit Err.Number``): a negative number, which Windows reports
  as the unsigned 32-bit value (0xC004F074). Versions of slmgr without that quit exit 0 after the same
  ``Error:`` line.
- Some failures always exit 0: a product whose license status is not "licensed" after ``Activate`` prints
  ``Error: Product activation failed.``; no product key prints ``Error: product not found.``
- slmgr's messages are localised (``slmgr\\<language id>\\slmgr.ini`` beside the script), but its HRESULTs are
  not: a non-zero exit status, the English ``Error:`` prefix or a licensing error code (``0xC004xxxx``, the
  Software Licensing Service's facility) anywhere in the output is a failure in any language.
- So that a failure slmgr words in another language and exits 0 for is not taken as success, ``activate``
  then reads the license state itself (``licensed``): WMI ``root\\cimv2``, the ``SoftwareLicensingProduct``
  instances whose ``ApplicationID`` is Windows' (``55c92734-d682-4d71-983e-d6ec3f16059f``, the one slmgr
  filters on) and which have a ``PartialProductKey`` (a product key installed); ``LicenseStatus`` (uint32) 0
  unlicensed, 1 licensed, 2 out-of-box grace, 3 out-of-tolerance grace, 4 non-genuine grace, 5 notification, 6
  extended grace. Activated means one of them is licensed (1). Through pywin32's COM client and the scripting
  API (``SWbemLocator.ConnectServer``, ``ExecQuery``, ``Properties_``) as ``agent.platform.windows_network``
  reaches WMI; failures are ``pywintypes.com_error``.

The value is checked before anything runs (``parse_server``): it goes on a command line, so only a host name,
an IPv4 address or a bracketed IPv6 address and a port pass, and no blank, quote or shell character can.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import PureWindowsPath
from typing import Any

from agent.errors import PlatformError
from agent.platform.base import run_bounded, scrub
from agent.platform.wmi import com_text, load, prop

#: Seconds each slmgr run may take. /ato waits for the KMS server's answer (or the network's timeout), so it
#: is given longer than /skms, which only stores a value.
SET_SERVER_TIMEOUT = 60.0
ACTIVATE_TIMEOUT = 120.0
#: What slmgr prints before an error (``L_MsgErrorText_8``, English).
ERROR_PREFIX = "Error:"
#: A Software Licensing Service error code (HRESULT of its facility, severity error), in any language's output.
_LICENSING_ERROR = re.compile(r"\b0x[cC]004[0-9A-Fa-f]{4}\b")
NAMESPACE = "root\\cimv2"
#: SoftwareLicensingProduct's ApplicationID of Windows (other products, such as Office, have their own).
WINDOWS_APPLICATION_ID = "55c92734-d682-4d71-983e-d6ec3f16059f"
PRODUCTS = ("SELECT Name, LicenseStatus, PartialProductKey FROM SoftwareLicensingProduct WHERE ApplicationID = "
            "'55c92734-d682-4d71-983e-d6ec3f16059f'")
LICENSED = 1
#: SoftwareLicensingProduct.LicenseStatus, in words.
LICENSE_STATUS = {0: "unlicensed", 1: "licensed", 2: "in its out-of-box grace period",
                  3: "in its out-of-tolerance grace period", 4: "in its non-genuine grace period",
                  5: "in notification mode", 6: "in its extended grace period"}
#: RFC 1123 host-name label: letters, digits and hyphens, not starting or ending with a hyphen.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_DOTTED = re.compile(r"[0-9.]+")
#: The only characters a value may hold: it goes on a command line.
_ALLOWED = re.compile(r"[A-Za-z0-9.:\[\]-]+")
MAX_HOST = 253
MAX_VALUE = 300

#: Runs ``argv`` with a time bound (seconds) and returns its exit status and output; ``TimeoutExpired`` past it.
Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[bytes]"]


class BadServer(ValueError):
    """A ``kmsactivate`` value that is no ``host:port``; the message says what is wrong with it."""


@dataclasses.dataclass(frozen=True)
class KmsServer:
    """A checked KMS server: a host name, an IPv4 address or an IPv6 address (without brackets), and a port."""

    host: str
    port: int

    @property
    def ipv6(self) -> bool:
        return ":" in self.host

    def argument(self) -> str:
        """The server as slmgr's ``/skms`` takes it (an IPv6 address in brackets)."""
        return f"[{self.host}]:{self.port}" if self.ipv6 else f"{self.host}:{self.port}"


def parse_server(value: Any) -> KmsServer:
    """``value`` (``"host:port"``, ``"[IPv6]:port"``) checked; BadServer naming what is wrong."""
    if isinstance(value, dict):
        raise BadServer("expected \"host:port\" of a KMS server; the Red Hat form {activation_key, profile, "
                        "domains} is not supported")
    if not isinstance(value, str):
        raise BadServer(f"expected \"host:port\" of a KMS server, got {type(value).__name__}")
    if not value:
        raise BadServer("expected \"host:port\" of a KMS server, got an empty value")
    shown = scrub(repr(value), "")
    if len(value) > MAX_VALUE:
        raise BadServer(f"expected \"host:port\" of a KMS server; the value is longer than {MAX_VALUE} characters")
    if not _ALLOWED.fullmatch(value):
        raise BadServer(f"{shown} holds a character other than letters, digits, '.', '-', ':', '[' and ']' (a "
                        "blank, a quote or one a command line would interpret); expected \"host:port\" of a KMS "
                        "server")
    if value.startswith("["):
        host, bracket, port = value[1:].partition("]")
        if not bracket:
            raise BadServer(f"{shown}: the IPv6 address has no closing ']'")
        if not port.startswith(":"):
            raise BadServer(f"{shown}: expected ':<port>' after the bracketed IPv6 address")
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise BadServer(f"{shown}: {scrub(repr(host), '')} in brackets is not an IPv6 address") from None
        return KmsServer(address.compressed, _port(port[1:], shown))
    host, colon, port = value.rpartition(":")
    if not colon:
        raise BadServer(f"{shown} has no port; expected \"host:port\" (the KMS port is usually 1688)")
    if ":" in host:
        raise BadServer(f"{shown}: an IPv6 address must be written in brackets, \"[address]:port\"")
    return KmsServer(_host(host, shown), _port(port, shown))


def _host(host: str, shown: str) -> str:
    if not host:
        raise BadServer(f"{shown} has no host before the ':'")
    if _DOTTED.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise BadServer(f"{shown}: {host!r} is not an IPv4 address") from None
    name = host.removesuffix(".")
    if len(name) > MAX_HOST or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise BadServer(f"{shown}: {host!r} is not a host name (letters, digits and hyphens in dot-separated "
                        "labels of at most 63 characters) or an IP address")
    return host


def _port(text: str, shown: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise BadServer(f"{shown}: the port {text!r} is not a number from 1 to 65535")
    return int(text)


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    return run_bounded(argv, b"", timeout)


def system_root() -> str:
    """``%SystemRoot%`` (``C:\\Windows`` when the variable is missing)."""
    return os.environ.get("SYSTEMROOT") or r"C:\Windows"  # os.environ upper-cases names on Windows


class Licensing:
    """The licensing port: slmgr.vbs run by cscript, each run bounded in time.

    ``cscript`` and ``slmgr`` are the programs' paths (by default under ``%SystemRoot%\\System32``);
    ``runner`` runs one command line (``run_bounded`` by default; tests run a fake cscript through it too);
    ``modules`` injects pywin32's (``pythoncom``, ``pywintypes``, ``win32com.client``) for the WMI read, which
    tests give fakes.
    """

    def __init__(self, cscript: str | None = None, slmgr: str | None = None, runner: Runner = _run,
                 set_server_timeout: float = SET_SERVER_TIMEOUT, activate_timeout: float = ACTIVATE_TIMEOUT,
                 modules: dict[str, Any] | None = None) -> None:
        system32 = PureWindowsPath(system_root(), "System32")
        self.cscript = cscript or str(system32 / "cscript.exe")
        self.slmgr = slmgr or str(system32 / "slmgr.vbs")
        self._runner = runner
        self.set_server_timeout = set_server_timeout
        self.activate_timeout = activate_timeout
        self._loaded: dict[str, Any] = dict(modules or {})

    def set_server(self, server: KmsServer) -> str:
        """``slmgr /skms host:port``; slmgr's message, or PlatformError saying why it failed."""
        return self._slmgr(["/skms", server.argument()], self.set_server_timeout)

    def activate(self) -> str:
        """``slmgr /ato``, then the license state read back (``licensed``); slmgr's message, or PlatformError
        saying why activation failed."""
        message = self._slmgr(["/ato"], self.activate_timeout)
        self.licensed()
        return message

    def licensed(self) -> str:
        """The name of the Windows product that is licensed; PlatformError saying the license state when none is
        (or when it cannot be read)."""
        com_error = load(self._loaded, "pywintypes").com_error
        try:
            load(self._loaded, "pythoncom").CoInitialize()
            locator = load(self._loaded, "win32com.client").Dispatch("WbemScripting.SWbemLocator")
            products = [(prop(p, "Name"), prop(p, "LicenseStatus"))
                        for p in locator.ConnectServer(".", NAMESPACE).ExecQuery(PRODUCTS)
                        if prop(p, "PartialProductKey")]
        except com_error as exc:
            raise PlatformError(f"slmgr /ato reported no error, but the license status cannot be read through WMI "
                                f"(SoftwareLicensingProduct): {com_text(exc)}") from exc
        for name, status in products:
            if status == LICENSED:
                return str(name)
        if not products:
            raise PlatformError("slmgr /ato reported no error, but no Windows product has a product key installed")
        states = "; ".join(f"{scrub(str(name), '')} is {LICENSE_STATUS.get(status, f'in license status {status}')}"
                           for name, status in products)
        raise PlatformError(f"slmgr /ato reported no error, but Windows is not activated: {states}")

    def _slmgr(self, options: list[str], timeout: float) -> str:
        step = f"slmgr {' '.join(options)}"
        if not os.path.exists(self.cscript):  # told apart here: a wrapper (setpriv) would report it as its own
            raise PlatformError(f"{step}: {self.cscript} is not there (Windows Script Host is needed)")
        try:
            result = self._runner([self.cscript, "//nologo", self.slmgr, *options], timeout)
        except FileNotFoundError:
            raise PlatformError(f"{step}: {self.cscript} is not there (Windows Script Host is needed)") from None
        except subprocess.TimeoutExpired:
            raise PlatformError(f"{step} did not finish within {timeout:g} s") from None
        except OSError as exc:
            raise PlatformError(f"{step}: cscript cannot be run ({exc.strerror or type(exc).__name__})") from None
        return outcome(step, result.returncode, _text(result.stdout), _text(result.stderr))


def _text(data: bytes | None) -> str:
    # cscript writes in the console's code page; the messages that matter here are ASCII.
    return (data or b"").decode("utf-8", "replace")


def outcome(step: str, status: int, stdout: str, stderr: str) -> str:
    """slmgr's message for a run that succeeded; PlatformError for one that failed, with its error lines."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    # An error line starts with its code, which matters most: a long one is cut at its end.
    if status != 0:
        message = scrub(" ".join(errors), "") or scrub(stderr, "", tail=True) or scrub(" ".join(lines), "", tail=True)
        raise PlatformError(f"{step} failed with exit status {_status(status)}: {message or 'no message'}")
    errors = errors or [line for line in lines if _LICENSING_ERROR.search(line)]
    if errors:
        raise PlatformError(f"{step} failed (exit status 0): {scrub(' '.join(errors), '')}")
    if not lines:
        return ""
    return scrub(lines[-1], "", tail=True)



def _status(status: int) -> str:
    """An exit status as Windows shows it: an HRESULT in hex (slmgr quits with one), else a number."""
    unsigned = status & 0xFFFFFFFF
    return f"0x{unsigned:08X}" if unsigned > 0xFFFF else str(status)
