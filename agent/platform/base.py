"""What the backends share: running a system tool with the secret on stdin, scrubbing its messages, and
checking a password against a crypt(3) hash from the system's account files.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hmac
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from agent.errors import PlatformError

TOOL_TIMEOUT = 60.0
MAX_TOOL_MESSAGE = 200


def scrub(text: str, secret: str, *, tail: bool = False) -> str:
    """``text`` on one bounded line, with every occurrence of ``secret`` masked; ``tail`` keeps the end of a
    long text rather than its start (a tool's reason for failing usually comes last)."""
    if secret:
        text = text.replace(secret, "***")
    line = " ".join(text.split())
    if len(line) <= MAX_TOOL_MESSAGE:
        return line
    return "..." + line[-MAX_TOOL_MESSAGE:] if tail else line[:MAX_TOOL_MESSAGE] + "..."


def check_user(user: str) -> None:
    """Refuse account names that would break a tool's line format (``user:password``) or argv."""
    if not user or user.startswith("-") or any(c in user for c in ":\r\n\0"):
        raise PlatformError(f"invalid account name {scrub(repr(user), '')}: set [password] user in the "
                            "agent's configuration to an existing account")


def dies_with_agent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that the tool is killed if the agent dies first (Linux: util-linux's ``setpriv
    --pdeathsig``, applied between fork and exec by the kernel's parent-death signal).

    A tool left running by a killed agent could still set a password after the restarted agent has
    checked, given up and told the host it was not set.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def run_bounded(argv: Sequence[str], stdin: bytes, timeout: float, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (as ``dies_with_agent``) in a process group of its own, capturing its output; past
    ``timeout`` the whole group is killed (a tool's own children too, which ``subprocess.run`` would leave
    running) and ``subprocess.TimeoutExpired`` raised."""
    with subprocess.Popen(dies_with_agent(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                if sys.platform == "win32":  # no process groups to kill there: the tool itself
                    process.kill()
                else:
                    os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_tool(argv: Sequence[str], stdin: str, secret: str, package: str, *, timeout: float | None = None,
             tool: str | None = None) -> str:
    """Run a system tool, feeding ``stdin`` (which holds the secret: never argv); its standard output, or
    PlatformError naming the tool, its exit status and its message.

    ``timeout`` bounds the run (TOOL_TIMEOUT by default). ``tool`` is the name messages give when ``argv[0]``
    is only a wrapper around it (``ip netns exec NS ifup``, ``unshare ...``); ``package`` is the package that
    provides ``argv[0]``.
    """
    program = argv[0]
    name = tool or program
    limit = TOOL_TIMEOUT if timeout is None else timeout
    if shutil.which(program) is None:
        raise PlatformError(f"{program} is not installed; install the {package} package")
    # A fixed locale keeps the tools' messages in the language of the agent's own.
    env = {**os.environ, "LC_ALL": "C"}
    try:
        result = run_bounded(argv, stdin.encode("utf-8"), limit, env)
    except FileNotFoundError:
        raise PlatformError(f"{program} is not installed; install the {package} package") from None
    except subprocess.TimeoutExpired:
        raise PlatformError(f"{name} did not finish within {limit:g} s") from None
    except OSError as exc:
        raise PlatformError(f"cannot run {name}: {exc.strerror}") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).decode("utf-8", "replace")
        raise PlatformError(f"{name} failed with exit status {result.returncode}: "
                            f"{scrub(output, secret, tail=True) or 'no message'}")
    return result.stdout.decode("utf-8", "replace")


# crypt(3) returns a pointer into one static buffer. crypt_r would avoid it, but its ``struct crypt_data``
# has a different size in libxcrypt, glibc's old libcrypt and FreeBSD's, which ctypes cannot learn; a lock
# around crypt is correct everywhere.
_CRYPT_LOCK = threading.Lock()


@functools.cache
def load_libcrypt() -> ctypes.CDLL | None:
    """The system's crypt(3) library (libxcrypt on Linux, libcrypt on FreeBSD), or None without one."""
    try:
        library = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
        crypt = library.crypt
    except (OSError, AttributeError):
        return None
    crypt.restype = ctypes.c_char_p
    crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return library


def crypt_matches(password: str, hashed: bytes) -> bool | None:
    """Whether ``password`` hashes to ``hashed`` (an account file's password field) under crypt(3).

    False for fields that no password opens: empty (no password; the agent never sets an empty one), or
    starting with ``!`` or ``*`` (locked or disabled, including FreeBSD's ``*LOCKED*``). None when there is
    no crypt(3) library, or it rejects the field (a method it does not know, or not a hash at all): the
    answer is then unknown, not no.
    """
    if not hashed or hashed.startswith((b"!", b"*")):
        return False
    if "\0" in password:
        return False  # crypt(3) takes C strings: no hash can stand for a password with a NUL in it
    library = load_libcrypt()
    if library is None:
        return None
    with _CRYPT_LOCK:
        result: bytes | None = library.crypt(password.encode("utf-8"), hashed)
    # libxcrypt reports failure with NULL or, by default, a "failure token" starting with "*", which can
    # never equal a field that passed the check above.
    if result is None or result.startswith(b"*"):
        return None
    return hmac.compare_digest(result, hashed)


def account_field(path: Path, user: str, index: int, missing_ok: bool = False) -> bytes | None:
    """Field ``index`` of ``user``'s line in a colon-separated account file (passwd, shadow, master.passwd).

    None when no line names the user, or when the file does not exist and ``missing_ok``; PlatformError
    when it cannot be read. The file is read as bytes: account files need not be UTF-8.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise PlatformError(f"cannot read {path}: it does not exist; check the agent's --root") from None
    except PermissionError:
        raise PlatformError(f"cannot read {path}: permission denied; the agent must run as root") from None
    except OSError as exc:
        raise PlatformError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    name = user.encode("utf-8")
    for line in data.splitlines():
        fields = line.split(b":")
        if fields[0] == name:
            return fields[index] if len(fields) > index else b""
    return None
