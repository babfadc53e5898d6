"""Checks of the shadow hashes the real chpasswd writes in a throw-away root, and a chpasswd that counts its runs."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from pathlib import Path


def shadow_hash(root: Path, user: str) -> str:
    for line in (root / "etc/shadow").read_text().splitlines():
        name, hashed, *_ = line.split(":")
        if name == user:
            return hashed
    raise AssertionError(f"{user} is not in {root}/etc/shadow")


def password_matches(password: str, hashed: str) -> bool:
    """Check a shadow hash with the system's own crypt(3) (libxcrypt: SHA512, yescrypt, ...)."""
    libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    result = libcrypt.crypt(password.encode(), hashed.encode())
    return result is not None and result.decode() == hashed


def counting_chpasswd(directory: Path) -> Path:
    """A bin directory whose chpasswd logs each run's argv (never stdin) and then runs the real one."""
    real = shutil.which("chpasswd", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert real, "chpasswd is missing: apt-get install passwd"
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "chpasswd"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{directory}/runs"\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return directory


def runs(directory: Path) -> list[str]:
    """The argv lines the counting chpasswd recorded."""
    log = directory / "runs"
    return log.read_text().splitlines() if log.exists() else []
