"""injectfile and file_inject: write a file the host sends into the guest (docs/protocol.md, "injectfile and
file_inject").

Both commands carry a guest path and the file's contents; they differ only in how. ``injectfile``, the older
form, sends base64 of ``"<path>,<contents>"``, split at the first comma (a path holds none, contents may);
``file_inject`` sends ``{"b64_path": <base64>, "b64_file": <base64>}``. The writing itself is the files
port's (``agent.platform.files``; on Windows ``agent.platform.windows_files``, for drive paths): checked,
symlink-safe, atomic and durable, with a backup of the file it replaces. The machine decides when, and journals what.

Validate, then act. ``received`` decodes the value and has the port check the path, the policy
(``inject.allowed_paths``) and the size (``inject.max_size``) without touching the disk; ``write`` journals
the path, the size and the SHA-256 of the contents as working data. ``writing`` writes through the port, and
``wrote`` journals what the write did: the backup's name, whether the file is new, its mode and owner.
``written`` answers. The contents themselves may be keys: they are never journaled (``SECRET_VALUE``: the
request's value is not stored, and recovery re-reads it from XenStore, checked against its digest), never
logged, never quoted in a reply.

A crash leaves the target either the old file or the new one, whole (the port renames a synced temporary
file over it). A resumed ``writing`` first removes the temporary file an interrupted write may have left
(never finished: nothing says it is whole), then compares the target's digest with the journaled one: equal
means the write was done before the crash, so it is not done again and no second backup is made; otherwise
the write is done again. Exactly one reply follows either way.

    received --write--> writing --wrote--> written --answer--> done
    received, writing --fail--> failed          (a bad value, a refused path, a failed write)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

import agent
from agent.config import DEFAULT_CONFIG, rooted
from agent.errors import CommandFailed, PlatformError
from agent.machines.base import RESUME, Command, Event
from agent.platform.files import Files, show
from agent.platform.windows_files import WindowsFiles

log = logging.getLogger(__name__)

T = TypeVar("T")

STATES = ["received", "writing", "written", "done"]
TRANSITIONS = [
    {"trigger": "write", "source": "received", "dest": "writing"},
    {"trigger": "wrote", "source": "writing", "dest": "written"},
    {"trigger": "answer", "source": "written", "dest": "done"},
]
TERMINAL = frozenset({"done"})
RECOVERY = {
    # Nothing was written yet: decode and check the request (re-read from XenStore) again.
    "received": RESUME,
    # The target is the old file or the new one, whole. Remove the temporary file an interrupted write left;
    # if the target already has the journaled digest, the write happened: journal it without writing again
    # (so no second backup), else write again.
    "writing": RESUME,
    # Written and journaled: only the reply is left.
    "written": RESUME,
}

#: The earlier agents' reply to a value that is not base64, which operators' tooling recognises.
BAD_BASE64 = "Error doing base64 decoding of data"
LEGACY_USAGE = 'expected base64 of "<path>,<contents>"'
NEW_USAGE = 'expected a JSON object {"b64_path": <base64 path>, "b64_file": <base64 contents>}'


@dataclasses.dataclass(frozen=True)
class InjectData:
    """The injection's working data: which file, and a digest of its contents (never the contents)."""

    #: The guest path, normalised by the port's check.
    path: str = ""
    size: int = 0
    #: SHA-256 of the contents, in hex: a resumed write compares the target's digest with it.
    sha256: str = ""
    #: Set by ``wrote``: the guest path of the backup of the replaced file (None: none was made, or the write
    #: was found done on recovery), whether the file is new, and its mode in octal.
    backup: str | None = None
    created: bool | None = None
    mode: str | None = None


def b64decode(text: str) -> bytes:
    """Standard base64, as the host's ``base64.b64encode`` writes it (blanks and line breaks tolerated)."""
    return base64.b64decode("".join(text.split()), validate=True)


def utf8_path(raw: bytes, usage: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandFailed("500", f"{usage}: the path is not UTF-8 text") from None


def capitalised(message: str) -> str:
    return message[:1].upper() + message[1:]


#: A Windows drive path: a Windows agent's files port (``agent.platform.windows_files``) writes it; the one of
#: Linux and FreeBSD refuses it with its own clear message.
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def program_directories() -> list[str]:
    """Where the running agent's code is: a frozen build's folder (the MSI's, under Program Files), else the
    package and, in a virtual environment, that environment (a release, or one an operator made). Outside
    ``install_root`` when the agent was installed by hand or by the MSI."""
    if getattr(sys, "frozen", False):
        executable = sys.executable
        flavour: type[PurePath] = PureWindowsPath if _DRIVE.match(executable) else PurePosixPath
        return [str(flavour(executable).parent)]
    found = [str(Path(agent.__file__).resolve().parent)]
    if sys.prefix != sys.base_prefix:
        found.append(sys.prefix)
    return found


class _Injection(Command):
    """What both commands share: everything but how the value is decoded. (Each subclass gets a machine of
    its own from this table.)"""

    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY
    Data = InjectData
    SECRET_VALUE = True
    NEEDS = frozenset({"files"})

    def decode(self, value: Any) -> tuple[str, bytes]:
        """(path, contents) from the request's value; CommandFailed when it is malformed."""
        raise NotImplementedError

    def on_enter_received(self, event: Event) -> None:
        path, contents = self.decode(self.request_value())
        files = self._files()
        try:
            target = files.check(path, len(contents))  # the path, the policy and the size; no disk access
        except PlatformError as exc:
            raise CommandFailed("500", capitalised(str(exc))) from None
        self._refuse_own(target.path)
        data = InjectData(target.path, len(contents), hashlib.sha256(contents).hexdigest())
        self.advance("write", detail={"path": data.path, "size": data.size, "sha256": data.sha256}, data=data)

    def _refuse_own(self, path: str) -> None:
        """The agent's own state, install, configuration and program directories are not the host's to write: a
        file there could replace the journal (the audit trail), a release, the agent's policy or the code that
        runs, whatever ``inject.allowed_paths`` says.

        Compared by device and inode, not by name: the state directory may be a link an operator made, or a
        bind mount, and a path through its real name must be refused too.
        """
        config = self.ctx.config
        names: tuple[tuple[str, str], ...] = ((config.state_dir, "state"), (config.install_root, "install"),
                                              (str(DEFAULT_CONFIG.parent), "configuration"))
        programs = tuple((directory, "program") for directory in program_directories())
        own: dict[tuple[int, int], tuple[str, str]] = {}
        for directory, what in names:
            with contextlib.suppress(OSError):
                found = os.stat(rooted(config.root, directory))
                own[(found.st_dev, found.st_ino)] = (directory, what)
        for directory, what in programs:
            # The running code is where it is, not under the root: found by its own path.
            with contextlib.suppress(OSError):
                found = os.stat(directory)
                own[(found.st_dev, found.st_ino)] = (directory, what)
        names += programs
        # A drive path is compared as Windows compares paths (ignoring case), and found where the files port
        # puts it; a POSIX path under the root.
        files = self._files()
        windows = files if isinstance(files, WindowsFiles) and _DRIVE.match(path) else None
        flavour: type[PurePath] = PureWindowsPath if windows else PurePosixPath
        guest = flavour(path)
        for directory, what in names:
            if guest == flavour(directory) or flavour(directory) in guest.parents:
                raise CommandFailed("500", f"Refused to write {show(path)}: it is inside the agent's own {what} "
                                           f"directory {directory}")
        for ancestor in (guest, *guest.parents):
            local = windows.drives(ancestor.drive[0].upper(), ancestor.parts[1:]) if windows \
                else rooted(config.root, str(ancestor))
            try:
                found = os.stat(local, follow_symlinks=False)
            except OSError:
                continue  # not there yet: it will be created below an ancestor checked here
            hit = own.get((found.st_dev, found.st_ino))
            if hit is not None:
                raise CommandFailed("500", f"Refused to write {show(path)}: it is inside the agent's own "
                                           f"{hit[1]} directory {hit[0]}")

    def on_enter_writing(self, event: Event) -> None:
        data: InjectData = self.data
        files = self._files()
        if self.resumed:
            # An interrupted write's temporary file is never finished, and the target is whole either way.
            removed = self._port(lambda: files.discard_partial(data.path))
            if self._port(lambda: files.digest(data.path)) == data.sha256:
                log.info("command %d %s: %s already holds the contents; not writing it again", self.record.id,
                         self.NAME, show(data.path))
                self.advance("wrote", detail={"already_in_place": True, "temp_removed": removed},
                             data=dataclasses.replace(data, backup=None, created=None, mode=None))
                return
        else:
            removed = False
        path, contents = self.decode(self.request_value())
        same_path = self._port(lambda: files.check(path, len(contents))).path == data.path
        if not same_path or hashlib.sha256(contents).hexdigest() != data.sha256:
            raise CommandFailed("500", f"Invalid {self.NAME} value: the request no longer matches the one journaled")
        written = self._port(lambda: files.write(data.path, contents))
        mode = f"{written.mode:04o}"
        log.info("command %d %s: wrote %s (%d bytes%s)", self.record.id, self.NAME, show(written.path), written.size,
                 "" if written.backup is None else f", backup {show(written.backup)}")
        self.advance("wrote", detail={"backup": written.backup, "created": written.created, "mode": mode,
                                      "uid": written.uid, "gid": written.gid, "temp_removed": removed},
                     data=dataclasses.replace(data, backup=written.backup, created=written.created, mode=mode))

    def on_enter_written(self, event: Event) -> None:
        # The original unix agent answered "0" and "" (nova looks only at the returncode).
        self.finish("answer", "0", "")

    # -- giving up after a crash loop -----------------------------------------------------------------

    def on_give_up(self, attempts: int) -> None:
        """The reply says whether the file is in place: the write may have finished before the last crash."""
        if self.state == "written":
            self.finish("answer", "0", "", detail={"attempts": attempts})
            return
        if self.state != "writing":  # received: nothing was written
            super().on_give_up(attempts)
            return
        data: InjectData = self.data
        shown = show(data.path)
        try:
            files = self._files()
            removed = files.discard_partial(data.path)
            in_place = files.digest(data.path) == data.sha256
        except (CommandFailed, PlatformError) as exc:
            why = exc.message if isinstance(exc, CommandFailed) else str(exc)
            outcome = f"whether {shown} was written cannot be checked ({why})"
        else:
            if in_place:
                self.advance("wrote", detail={"already_in_place": True, "temp_removed": removed,
                                              "checked_after": attempts},
                             data=dataclasses.replace(data, backup=None, created=None, mode=None))
                return
            outcome = f"{shown} was not written (the file there, if any, is as it was)"
        self.finish("fail", "500", f"{self.interrupted(attempts)}; {outcome}; not retrying it, to stop a crash loop",
                    detail={"error": "crash_loop", "attempts": attempts})

    # -- helpers --------------------------------------------------------------------------------------

    def _files(self) -> Files | WindowsFiles:
        files: Files | WindowsFiles = self.ctx.ports.require("files")
        return files

    @staticmethod
    def _port(call: Callable[[], T]) -> T:
        """``call()`` on the files port; a refusal or a failure of the system is the command's "500", which
        names the path and the reason (never the contents)."""
        try:
            return call()
        except PlatformError as exc:
            raise CommandFailed("500", capitalised(str(exc))) from None


class InjectFile(_Injection):
    """``injectfile``: base64 of ``"<path>,<contents>"``."""

    NAME = "injectfile"

    def decode(self, value: Any) -> tuple[str, bytes]:
        if not isinstance(value, str):
            raise CommandFailed("500", f"{BAD_BASE64}: {LEGACY_USAGE}, got {type(value).__name__}")
        try:
            decoded = b64decode(value)
        except (binascii.Error, ValueError):
            raise CommandFailed("500", BAD_BASE64) from None
        raw_path, comma, contents = decoded.partition(b",")
        if not comma:
            # Never quote the decoded value: without a comma there is no telling the path from a secret.
            raise CommandFailed("500", f"Invalid injectfile value: {LEGACY_USAGE}; the decoded value has no "
                                       "comma between the path and the contents")
        path = utf8_path(raw_path, "Invalid injectfile value")
        if not path.startswith("/") and not _DRIVE.match(path):
            # Nor a "path" that is no path: the value may be a secret that merely holds a comma.
            raise CommandFailed("500", f"Invalid injectfile value: {LEGACY_USAGE}; the text before the first comma "
                                       "is not an absolute path")
        return path, contents


class FileInject(_Injection):
    """``file_inject``: ``{"b64_path": <base64 path>, "b64_file": <base64 contents>}``."""

    NAME = "file_inject"

    def decode(self, value: Any) -> tuple[str, bytes]:
        if not isinstance(value, dict):
            raise CommandFailed("500", f"Invalid file_inject value: {NEW_USAGE}, got {type(value).__name__}")
        fields: dict[str, bytes] = {}
        for key in ("b64_path", "b64_file"):
            if key not in value:
                raise CommandFailed("500", f"Invalid file_inject value: {key!r} is missing; {NEW_USAGE}")
            if not isinstance(value[key], str):
                raise CommandFailed("500", f"Invalid file_inject value: {key!r} must be a base64 string, got "
                                           f"{type(value[key]).__name__}")
            try:
                fields[key] = b64decode(value[key])
            except (binascii.Error, ValueError):
                raise CommandFailed("500", f"{BAD_BASE64}: {key!r} is not base64") from None
        return utf8_path(fields["b64_path"], "Invalid file_inject value"), fields["b64_file"]
