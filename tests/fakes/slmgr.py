"""A stand-in for ``cscript //nologo slmgr.vbs``, which cannot run here: an executable that answers as slmgr does.

It follows recorded facts about slmgr.vbs (the script as Windows ships it; see ``agent.platform.windows_kms``):
- Output goes to standard output (``WScript.Echo``), lines ending in CR LF; cscript's own errors go to standard
  error (``Input Error: Can not find script file ...``, exit status 1).
- ``/skms NAME:PORT`` prints ``Key Management Service machine name set to NAME:PORT successfully.``
- ``/ato`` prints ``Activating <product> (<activation id>) ...``, then ``Product activated successfully.``
- A failing WMI call prints ``Error: 0x<HRESULT> <text>`` and quits with the HRESULT (``QuitIfError``); older
  versions exit 0 after it. A product left unlicensed prints ``Error: Product activation failed.`` and exits 0;
  no product key, ``Error: product not found.`` and exit 0.

Each run appends its arguments (after the program) as a JSON line to ``calls``; what it answers to each option
is the ``Answer`` the test set for it (``FakeCscript.answer``). A Linux exit status keeps only the low 8 bits,
so an HRESULT status arrives as its last byte.

``FakeLicensingWmi`` stands in for the license state the port reads back after ``/ato``: WMI's
``SoftwareLicensingProduct`` instances (``LicenseStatus`` 1 licensed, 0 unlicensed, 2-6 grace states; a product
key installed when ``PartialProductKey`` holds its last five characters).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

from agent.platform.windows_kms import WINDOWS_APPLICATION_ID
from tests.fakes.xeniface import _Apartments, _Com, _Instance, com_error

ACTIVATING = "Activating Windows(R), ServerDatacenter edition (b3ca044e-a358-4d68-9883-aaa2941aca99) ..."
SKMS_SET = "Key Management Service machine name set to {server} successfully."
ACTIVATED = "Product activated successfully."
ACTIVATED_PRODUCT = "Windows(R), ServerDatacenter edition"
#: HRESULTs and the texts slmgr prints for them.
SL_E_NO_KMS = 0xC004F074
NO_KMS_TEXT = ("Error: 0xC004F074 The Software Licensing Service reported that the computer could not be activated. "
               "No Key Management Service (KMS) could be contacted. Please see the Application Event Log for "
               "additional information.")
ACTIVATION_FAILED = "Error: Product activation failed."
PRODUCT_NOT_FOUND = "Error: product not found."
NO_SCRIPT = 'Input Error: Can not find script file "C:\\Windows\\System32\\slmgr.vbs".'


@dataclasses.dataclass(frozen=True)
class Answer:
    """What one slmgr option prints and how it exits; ``{server}`` in ``stdout`` is replaced by /skms's value."""

    stdout: tuple[str, ...] = ()
    status: int = 0
    stderr: str = ""
    #: Seconds to sleep first (a KMS server that does not answer).
    sleep: float = 0.0


SUCCESS = {"/skms": Answer((SKMS_SET,)), "/ato": Answer((ACTIVATING, ACTIVATED))}
#: /ato against an unreachable KMS server, as slmgr with QuitIfError answers (non-zero status), and as one
#: without it answers (status 0).
NO_KMS_QUITS = Answer((ACTIVATING, NO_KMS_TEXT), status=SL_E_NO_KMS)
NO_KMS_EXITS_0 = Answer((ACTIVATING, NO_KMS_TEXT))
STILL_UNLICENSED = Answer((ACTIVATING, ACTIVATION_FAILED))
NO_PRODUCT = Answer((PRODUCT_NOT_FOUND,))
MISSING_SCRIPT = Answer(stderr=NO_SCRIPT, status=1)

_PROGRAM = '''\
import json, sys, time
from pathlib import Path
here = Path(__file__).parent
args = sys.argv[1:]
with open(here / "calls", "a") as log:
    log.write(json.dumps(args) + "\\n")
answers = json.loads((here / "answers.json").read_text())
option = args[2] if len(args) > 2 else ""
answer = answers.get(option, {"stdout": [], "status": 1, "stderr": "Unrecognized option: " + option, "sleep": 0})
time.sleep(answer["sleep"])
server = args[3] if len(args) > 3 else ""
sys.stdout.write("".join(line.replace("{server}", server) + "\\r\\n" for line in answer["stdout"]))
sys.stderr.write(answer["stderr"])
sys.exit(answer["status"] & 0xFF)
'''


class FakeCscript:
    """The fake ``cscript.exe`` in ``directory``: its path, the answers it gives and the calls it got."""

    def __init__(self, directory: Path, answers: dict[str, Answer] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / "cscript"
        self.path.write_text(f"#!{sys.executable}\n{_PROGRAM}")
        self.path.chmod(0o755)
        self.answers: dict[str, Answer] = {}
        for option, answer in {**SUCCESS, **(answers or {})}.items():
            self.answer(option, answer)

    def answer(self, option: str, answer: Answer) -> None:
        """From now on answer ``option`` (``/skms``, ``/ato``) so."""
        self.answers[option] = answer
        table: dict[str, Any] = {name: dataclasses.asdict(given) for name, given in self.answers.items()}
        (self.directory / "answers.json").write_text(json.dumps(table))

    def calls(self) -> list[list[str]]:
        """The arguments of every run so far (``//nologo``, the script, the option, ...)."""
        log = self.directory / "calls"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def options(self) -> list[str]:
        """The slmgr options run so far, in order, with their values: ``["/skms kms:1688", "/ato"]``."""
        return [" ".join(call[2:]) for call in self.calls()]


@dataclasses.dataclass
class Product:
    """A ``SoftwareLicensingProduct`` instance: its name, ``LicenseStatus`` and ``PartialProductKey`` (None when
    no key is installed), of Windows' ApplicationID unless told otherwise."""

    name: str
    status: int = 1
    key: str | None = "J462D"
    application: str = WINDOWS_APPLICATION_ID


class FakeLicensingWmi:
    """WMI's ``root\\cimv2`` as the licensing port reads it: ``modules()`` is pywin32's ``pythoncom``,
    ``pywintypes`` and ``win32com.client``; ``ExecQuery`` answers the port's query with the ``products`` of the
    ApplicationID it names (WQL compares strings without regard to case), each an SWbemObject whose
    ``Properties_`` hold ``Name``, ``LicenseStatus`` and ``PartialProductKey``. ``error`` makes the query raise
    that ``com_error``."""

    def __init__(self, products: list[Product] | None = None) -> None:
        self.products = [Product(ACTIVATED_PRODUCT)] if products is None else products
        self.apartments = _Apartments()
        self.error: Exception | None = None
        self.queries: list[str] = []

    def modules(self) -> dict[str, Any]:
        return {"pythoncom": self.apartments, "pywintypes": types.SimpleNamespace(com_error=com_error),
                "win32com.client": types.SimpleNamespace(Dispatch=self._dispatch)}

    def _dispatch(self, progid: str) -> Any:
        assert progid == "WbemScripting.SWbemLocator" and self.apartments.initialized()
        wmi = self

        class Services(_Com):
            def ExecQuery(self, wql: str) -> list[Any]:
                self._check()
                wmi.queries.append(wql)
                if wmi.error is not None:
                    raise wmi.error
                found = re.fullmatch(r"SELECT (.+) FROM SoftwareLicensingProduct WHERE ApplicationID = '([^']*)'", wql)
                assert found, wql
                return [_Instance({"Name": p.name, "LicenseStatus": p.status, "PartialProductKey": p.key})
                        for p in wmi.products if p.application.lower() == found.group(2).lower()]

        class Locator(_Com):
            def ConnectServer(self, server: str, namespace: str) -> Services:
                assert (server, namespace) == (".", "root\\cimv2")
                return Services()

        return Locator()
