"""What the backends share: running a system tool with the secret on stdin, and scrubbing its messages."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from agent.errors import PlatformError

TOOL_TIMEOUT = 60.0
MAX_TOOL_MESSAGE = 200


def scrub(text: str, secret: str) -> str:
    """``text`` on one bounded line, with every occurrence of ``secret`` masked."""
    if secret:
        text = text.replace(secret, "***")
    line = " ".join(text.split())
    return line if len(line) <= MAX_TOOL_MESSAGE else line[:MAX_TOOL_MESSAGE] + "..."


def check_user(user: str) -> None:
    """Refuse account names that would break a tool's line format (``user:password``) or argv."""
    if not user or user.startswith("-") or any(c in user for c in ":\r\n\0"):
        raise PlatformError(f"invalid account name {scrub(repr(user), '')}: set [password] user in the "
                            "agent's configuration to an existing account")


def run_tool(argv: Sequence[str], stdin: str, secret: str, package: str) -> None:
    """Run a system tool, feeding ``stdin`` (which holds the secret: never argv); raise on failure."""
    tool = argv[0]
    # A fixed locale keeps the tools' messages in the language of the agent's own.
    env = {**os.environ, "LC_ALL": "C"}
    try:
        result = subprocess.run(list(argv), input=stdin.encode("utf-8"), capture_output=True,
                                timeout=TOOL_TIMEOUT, env=env, check=False)
    except FileNotFoundError:
        raise PlatformError(f"{tool} is not installed; install the {package} package") from None
    except subprocess.TimeoutExpired:
        raise PlatformError(f"{tool} did not finish within {TOOL_TIMEOUT:g} s") from None
    except OSError as exc:
        raise PlatformError(f"cannot run {tool}: {exc.strerror}") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).decode("utf-8", "replace")
        raise PlatformError(f"{tool} failed with exit status {result.returncode}: "
                            f"{scrub(output, secret) or 'no message'}")
