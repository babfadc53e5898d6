"""The FreeBSD backend, against a stand-in ``pw`` (FreeBSD's tool cannot run here) that behaves as pw(8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import PlatformError
from agent.platform.freebsd import FreeBSD

PASSWORD = "s3cret pass"


@pytest.fixture
def pw(tmp_path: Path) -> Path:
    """pw(8) as far as this backend uses it: ``usermod USER -h 0`` reads one line from fd 0; an unknown
    user ends with EX_NOUSER (67) and ``pw: no such user `x'``."""
    tool = tmp_path / "pw"
    tool.write_text(f"""#!/bin/sh
echo "$*" > "{tmp_path}/argv"
cat > "{tmp_path}/stdin"
for a in "$@"; do [ "$a" = nobody ] && {{ echo "pw: no such user \\`nobody'" >&2; exit 67; }}; done
exit 0
""")
    tool.chmod(0o755)
    return tool


def test_password_on_stdin_not_argv(pw: Path, tmp_path: Path) -> None:
    """pw gets ``[-R root] usermod USER -h 0`` and the password as one line on stdin."""
    FreeBSD(str(tmp_path / "root"), pw=str(pw)).set_password("freebsd", PASSWORD)
    assert (tmp_path / "argv").read_text().split() == ["-R", str((tmp_path / "root").resolve()), "usermod",
                                                        "freebsd", "-h", "0"]
    assert (tmp_path / "stdin").read_text() == PASSWORD + "\n"


def test_failure_names_the_cause(pw: Path) -> None:
    """pw's own message and status reach the error; the password does not."""
    with pytest.raises(PlatformError, match="exit status 67: pw: no such user") as caught:
        FreeBSD(pw=str(pw)).set_password("nobody", PASSWORD)
    assert PASSWORD not in str(caught.value)
