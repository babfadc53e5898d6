"""A stand-in for the reparse attributes Windows' ``os.lstat`` gives (``st_file_attributes``, ``st_reparse_tag``),
which Linux has not: made from the Linux file types, so tests of ``agent.platform.windows_files`` run on real
files under a throw-away root.

Facts it follows (winnt.h and the ``os.stat_result`` documentation): every entry has ``FILE_ATTRIBUTE_DIRECTORY``
(0x10) or, for a file, usually ``FILE_ATTRIBUTE_ARCHIVE`` (0x20); a symbolic link or a junction has
``FILE_ATTRIBUTE_REPARSE_POINT`` (0x400) with ``st_reparse_tag`` ``IO_REPARSE_TAG_SYMLINK`` (0xA000000C) or
``IO_REPARSE_TAG_MOUNT_POINT`` (0xA0000003); ``lstat`` describes the reparse point itself, not its target.
"""

from __future__ import annotations

import os
import stat

from agent.platform.windows_files import (
    FILE_ATTRIBUTE_REPARSE_POINT,
    IO_REPARSE_TAG_MOUNT_POINT,
    IO_REPARSE_TAG_SYMLINK,
)

FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_ARCHIVE = 0x20


class FakeAttributes:
    """``(st_file_attributes, st_reparse_tag)`` as Windows' lstat gives them, made from the Linux lstat: a link
    is a symbolic link reparse point, a directory in ``junctions`` a mount point, one in ``others`` a reparse
    point of another tag."""

    def __init__(self) -> None:
        self.junctions: set[str] = set()
        self.others: dict[str, int] = {}

    def __call__(self, path: str) -> tuple[int, int]:
        found = os.lstat(path)
        if stat.S_ISLNK(found.st_mode):
            return FILE_ATTRIBUTE_REPARSE_POINT, IO_REPARSE_TAG_SYMLINK
        kind = FILE_ATTRIBUTE_DIRECTORY if stat.S_ISDIR(found.st_mode) else FILE_ATTRIBUTE_ARCHIVE
        if path in self.junctions:
            return kind | FILE_ATTRIBUTE_REPARSE_POINT, IO_REPARSE_TAG_MOUNT_POINT
        if path in self.others:
            return kind | FILE_ATTRIBUTE_REPARSE_POINT, self.others[path]
        return kind, 0
