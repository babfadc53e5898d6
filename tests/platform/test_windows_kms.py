"""The licensing port (``agent.platform.windows_kms``): the value checked before anything runs, and slmgr run
through the real bounded runner against a fake cscript that answers as slmgr does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.errors import PlatformError
from agent.platform.windows_kms import BadServer, KmsServer, Licensing, outcome, parse_server
from tests.fakes.slmgr import (
    MISSING_SCRIPT,
    NO_KMS_EXITS_0,
    NO_KMS_QUITS,
    NO_KMS_TEXT,
    NO_PRODUCT,
    NO_SCRIPT,
    STILL_UNLICENSED,
    Answer,
    FakeCscript,
    FakeLicensingWmi,
    Product,
)
from tests.fakes.xeniface import WBEM_E_FAILED, wmi_error

SLMGR = r"C:\Windows\System32\slmgr.vbs"


@pytest.fixture
def cscript(tmp_path: Path) -> FakeCscript:
    return FakeCscript(tmp_path / "cscript")


@pytest.fixture
def wmi() -> FakeLicensingWmi:
    """One Windows product with a key, licensed."""
    return FakeLicensingWmi()


def licensing(fake: FakeCscript, wmi: FakeLicensingWmi | None = None, **kwargs: Any) -> Licensing:
    return Licensing(cscript=str(fake.path), slmgr=SLMGR, modules=(wmi or FakeLicensingWmi()).modules(), **kwargs)


# -- the value ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "server", "argument"), [
    ("kms.example.com:1688", KmsServer("kms.example.com", 1688), "kms.example.com:1688"),
    ("KMS-1.corp.example.:1688", KmsServer("KMS-1.corp.example.", 1688), "KMS-1.corp.example.:1688"),
    ("kms:1", KmsServer("kms", 1), "kms:1"),
    ("192.0.2.5:65535", KmsServer("192.0.2.5", 65535), "192.0.2.5:65535"),
    ("[2001:DB8:0:0::5]:1688", KmsServer("2001:db8::5", 1688), "[2001:db8::5]:1688"),
])
def test_good_values(value: str, server: KmsServer, argument: str) -> None:
    """Host names, IPv4 and bracketed IPv6 addresses with a port pass, as slmgr /skms takes them."""
    assert parse_server(value) == server
    assert server.argument() == argument


@pytest.mark.parametrize(("value", "why"), [
    ("", "got an empty value"),
    (1688, "got int"),
    (None, "got NoneType"),
    ({"activation_key": "k", "profile": "p", "domains": ["d"]}, "the Red Hat form"),
    ("kms.example.com", "has no port"),
    (":1688", "has no host"),
    ("kms:0", "the port '0' is not a number from 1 to 65535"),
    ("kms:65536", "the port '65536' is not a number"),
    ("kms:01688x", "is not a number"),
    ("kms:", "the port '' is not"),
    ("2001:db8::5:1688", "must be written in brackets"),
    ("[2001:db8::5]1688", "expected ':<port>' after the bracketed"),
    ("[2001:db8::5:1688", "no closing ']'"),
    ("[kms.example.com]:1688", "is not an IPv6 address"),
    ("[fe80::1%eth0]:1688", "a character other than"),
    ("256.1.1.1:1688", "is not an IPv4 address"),
    ("-kms:1688", "is not a host name"),
    ("kms_1:1688", "a character other than"),
    ("a" * 64 + ".example:1688", "is not a host name"),
    ("kms example:1688", "a character other than"),
    ("kms&calc:1688", "a character other than"),
    ('kms"x:1688', "a character other than"),
    ("kms%PATH%:1688", "a character other than"),
    ("kms\n:1688", "a character other than"),
    ("kms.example.com:1688" + "0" * 300, "longer than 300"),
])
def test_bad_values_are_refused_saying_why(value: Any, why: str) -> None:
    """A value that is no host:port, or holds anything a command line could interpret, is refused."""
    with pytest.raises(BadServer, match=None) as raised:
        parse_server(value)
    assert why in str(raised.value)


# -- running slmgr ----------------------------------------------------------------------------------------


def test_set_server_runs_slmgr_skms(cscript: FakeCscript) -> None:
    """/skms runs as cscript //nologo slmgr.vbs /skms host:port, and slmgr's line is the answer."""
    message = licensing(cscript).set_server(KmsServer("2001:db8::5", 1688))
    assert message == "Key Management Service machine name set to [2001:db8::5]:1688 successfully."
    assert cscript.calls() == [["//nologo", SLMGR, "/skms", "[2001:db8::5]:1688"]]


def test_activate_runs_slmgr_ato(cscript: FakeCscript) -> None:
    """/ato's last line (the success line) is the answer."""
    assert licensing(cscript).activate() == "Product activated successfully."
    assert cscript.options() == ["/ato"]


@pytest.mark.parametrize(("answer", "why"), [
    (NO_KMS_QUITS, f"slmgr /ato failed with exit status 116: {NO_KMS_TEXT[:120]}"),
    (NO_KMS_EXITS_0, f"slmgr /ato failed (exit status 0): {NO_KMS_TEXT[:120]}"),
    (STILL_UNLICENSED, "slmgr /ato failed (exit status 0): Error: Product activation failed."),
    (NO_PRODUCT, "slmgr /ato failed (exit status 0): Error: product not found."),
    (MISSING_SCRIPT, f"slmgr /ato failed with exit status 1: {NO_SCRIPT}"),
], ids=["error-quits", "error-exits-0", "unlicensed", "no-product", "no-script"])
def test_failures_carry_slmgrs_error_whatever_the_status(cscript: FakeCscript, answer: Answer, why: str) -> None:
    """An Error: line fails the step with a non-zero status and with status 0 alike, its code first (a long line
    is cut at its end); so does cscript's own error."""
    cscript.answer("/ato", answer)
    with pytest.raises(PlatformError) as raised:
        licensing(cscript).activate()
    assert str(raised.value).startswith(why)


@pytest.mark.parametrize(("stdout", "why"), [
    ("Activation de Windows...\r\nErreur : 0xC004F074 Le service de gestion des licences logicielles...\r\n",
     "slmgr /ato failed (exit status 0): Erreur : 0xC004F074 Le service"),
    ("0xc004c003\r\n", "slmgr /ato failed (exit status 0): 0xc004c003"),
], ids=["french", "bare-code"])
def test_a_licensing_error_code_fails_in_any_language(stdout: str, why: str) -> None:
    """A Software Licensing error code (0xC004xxxx) anywhere in output that exits 0 is a failure, whatever the
    language of the words around it."""
    with pytest.raises(PlatformError) as raised:
        outcome("slmgr /ato", 0, stdout, "")
    assert str(raised.value).startswith(why)


def test_activation_is_confirmed_through_wmi(cscript: FakeCscript, wmi: FakeLicensingWmi) -> None:
    """After /ato the port asks WMI for Windows' products (by Windows' ApplicationID) and one with a key licensed
    confirms it; licensed names that product."""
    assert licensing(cscript, wmi).activate() == "Product activated successfully."
    assert wmi.queries == ["SELECT Name, LicenseStatus, PartialProductKey FROM SoftwareLicensingProduct WHERE "
                           "ApplicationID = '55c92734-d682-4d71-983e-d6ec3f16059f'"]
    assert licensing(cscript, wmi).licensed() == "Windows(R), ServerDatacenter edition"


@pytest.mark.parametrize(("products", "why"), [
    ([Product("Windows(R), ServerStandard edition", status=0)],
     "Windows is not activated: Windows(R), ServerStandard edition is unlicensed"),
    ([Product("Windows(R), ServerStandard edition", status=2)],
     "Windows is not activated: Windows(R), ServerStandard edition is in its out-of-box grace period"),
    ([Product("Windows(R), ServerStandard edition", status=9)],
     "Windows is not activated: Windows(R), ServerStandard edition is in license status 9"),
    ([Product("Windows(R), ServerDatacenter edition", key=None), Product("Windows(R), ServerStandard", status=5)],
     "Windows is not activated: Windows(R), ServerStandard is in notification mode"),
    ([Product("Office 16, Office16ProPlusVL_KMS_Client edition", application="0ff1ce15-a989-479d-af46-f275c6370663"),
      Product("Windows(R), ServerStandard edition", status=0)],
     "Windows is not activated: Windows(R), ServerStandard edition is unlicensed"),
    ([Product("Windows(R), ServerStandard edition", key=None)], "no Windows product has a product key installed"),
    ([], "no Windows product has a product key installed"),
], ids=["unlicensed", "grace", "unknown-status", "keyless-licensed", "office-licensed", "no-key", "none"])
def test_an_ato_that_exits_0_without_a_license_fails(cscript: FakeCscript, products: list[Product],
                                                      why: str) -> None:
    """/ato exiting 0 with no English Error: line (slmgr in German here) while no Windows product with a key is
    licensed is a failure saying the license state; a licensed product without a key, or of Office, does not
    count."""
    cscript.answer("/ato", Answer(("Aktivierung von Windows(R), ServerStandard edition (x)...",
                                   "Fehler: Die Produktaktivierung ist fehlgeschlagen.")))
    with pytest.raises(PlatformError) as raised:
        licensing(cscript, FakeLicensingWmi(products)).activate()
    assert str(raised.value) == f"slmgr /ato reported no error, but {why}"


def test_a_wmi_failure_reading_the_license_is_a_platform_error(cscript: FakeCscript, wmi: FakeLicensingWmi) -> None:
    """A com_error from the query is a PlatformError with WMI's description."""
    wmi.error = wmi_error(WBEM_E_FAILED, "Generic failure ")
    with pytest.raises(PlatformError, match=r"the license status cannot be read through WMI "
                                            r"\(SoftwareLicensingProduct\): Generic failure$"):
        licensing(cscript, wmi).activate()


def test_a_hanging_slmgr_is_killed_at_its_bound(cscript: FakeCscript) -> None:
    """A KMS server that never answers: the run is killed at the step's time bound and the step fails."""
    cscript.answer("/ato", Answer(sleep=30))
    with pytest.raises(PlatformError, match=r"^slmgr /ato did not finish within 0.5 s$"):
        licensing(cscript, activate_timeout=0.5).activate()


def test_no_cscript_says_so(tmp_path: Path) -> None:
    """A missing cscript is named."""
    missing = tmp_path / "no-cscript"
    with pytest.raises(PlatformError, match="is not there"):
        Licensing(cscript=str(missing), slmgr=SLMGR).set_server(KmsServer("kms", 1688))


@pytest.mark.parametrize("status", [0xC004F074, -1073418124], ids=["unsigned", "signed"])
def test_an_hresult_status_is_shown_in_hex(status: int) -> None:
    """slmgr quits with the HRESULT; Windows reports it unsigned, either way it reads as 0xC004F074."""
    with pytest.raises(PlatformError, match=r"exit status 0xC004F074: Error: 0xC004F074 "):
        outcome("slmgr /ato", status, NO_KMS_TEXT + "\r\n", "")


def test_the_programs_default_to_system32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without paths given, cscript and slmgr.vbs are taken from %SystemRoot%\\System32."""
    monkeypatch.setenv("SYSTEMROOT", r"D:\Win")
    port = Licensing()
    assert (port.cscript, port.slmgr) == (r"D:\Win\System32\cscript.exe", r"D:\Win\System32\slmgr.vbs")
