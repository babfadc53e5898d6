"""A real xenstored on this machine, for the sandbox and the tests.

Debian's C xenstored (``xen-utils-4.17``) runs in user space once a small LD_PRELOAD library answers the
few hypervisor calls it makes at start (see ``xenstored_shim.c``). The library is built here with gcc.
``XENSTORED_RUNDIR`` and ``XENSTORED_PATH`` give each instance its own directory and socket; the same
variables point pyxs and the ``xenstore-*`` tools at it. Connections over the socket are dom0's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from agent.config import rooted
from agent.errors import SandboxError
from agent.xenstore import XenStore

XENSTORED = Path("/usr/lib/xen-4.17/bin/xenstored")
INSTALL_HINT = "install it with: apt-get install xen-utils-4.17 xenstore-utils gcc"
START_TIMEOUT = 10.0
#: The longest path a Unix socket address holds (sun_path is 108 bytes with its terminating NUL).
SOCKET_PATH_MAX = 107


def build_shim(directory: Path) -> Path:
    """Compile the LD_PRELOAD library into ``directory`` (once per source version) and return its path."""
    source = resources.files("agent").joinpath("xenstored_shim.c").read_bytes()
    target = directory / f"xenstored-shim-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if target.exists():
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise SandboxError(f"no C compiler found to build the xenstored shim; {INSTALL_HINT}")
    directory.mkdir(parents=True, exist_ok=True)
    source_file = directory / "xenstored_shim.c"
    source_file.write_bytes(source)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    result = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source_file), "-ldl"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"building the xenstored shim failed:\n{result.stderr.strip()}")
    partial.replace(target)
    return target


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Xenstored:
    """One xenstored process with its own run directory and socket."""

    def __init__(self, rundir: Path, shim: Path | None = None, trace: bool = True) -> None:
        self.rundir = Path(rundir)
        self.shim = shim
        #: Whether xenstored logs every operation to ``trace.log`` (the sandbox's record of the conversation);
        #: benchmarks turn it off, as a production xenstored runs.
        self.trace = trace
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.rundir / "socket"

    @property
    def env(self) -> dict[str, str]:
        """The variables that point pyxs and the xenstore-* tools at this daemon."""
        return {"XENSTORED_RUNDIR": str(self.rundir), "XENSTORED_PATH": str(self.socket_path)}

    @property
    def address(self) -> str:
        return f"unix:{self.socket_path}"

    def start(self) -> None:
        if not XENSTORED.exists():
            raise SandboxError(f"{XENSTORED} is missing; {INSTALL_HINT}")
        if len(bytes(self.socket_path)) > SOCKET_PATH_MAX:
            # xenstored only says "too long: No such file or directory" and exits.
            raise SandboxError(f"xenstored's socket {self.socket_path} is longer than a Unix socket address "
                               f"allows ({SOCKET_PATH_MAX} bytes); use a shorter directory (--dir, or TMPDIR)")
        self.rundir.mkdir(parents=True, exist_ok=True)
        shim = self.shim or build_shim(self.rundir)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        log_path = self.rundir / "xenstored.log"
        env = {**os.environ, **self.env, "LD_PRELOAD": str(shim)}
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [str(XENSTORED), "--no-fork",
                 *(["--trace-file", str(self.rundir / "trace.log")] if self.trace else [])],
                env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = log_path.read_text(errors="replace").strip()[-2000:]
                raise SandboxError(f"xenstored exited with status {self.process.returncode} at start:\n{output}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise SandboxError(f"xenstored did not open {self.socket_path} within {START_TIMEOUT:g} s")

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        """Stop the daemon (its in-memory store goes with it)."""
        process, self.process = self.process, None
        stop_process(process, timeout=5)

    def __enter__(self) -> Xenstored:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def create_domain(address: str, domid: int, name: str | None = None) -> str:
    """Create the nodes the toolstack gives a guest (name, domid, data/) and return its home path."""
    home = f"/local/domain/{domid}"
    with XenStore(address, home) as xs:
        xs.write("name", name or f"sandbox-{domid}")
        xs.write("domid", str(domid))
        xs.mkdir("data/host")
        xs.mkdir("data/guest")
    return home


#: The guest's accounts in a sandbox root: chpasswd -R changes their shadow entries, never this machine's.
GUEST_USERS = {"root": 0, "cloud": 1000}
STATE_DIR = "/var/lib/openstack-agent"


def make_guest_root(path: Path, encrypt_method: str | None = "SHA512") -> Path:
    """A throw-away system root with what the agent's password backend needs: passwd, group, shadow and
    (unless ``encrypt_method`` is None) login.defs naming the crypt method."""
    etc = path / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text("".join(f"{u}:x:{i}:{i}:{u}:/home/{u}:/bin/sh\n" for u, i in GUEST_USERS.items()))
    (etc / "group").write_text("".join(f"{u}:x:{i}:\n" for u, i in GUEST_USERS.items()))
    (etc / "shadow").write_text("".join(f"{u}:*:20000:0:99999:7:::\n" for u in GUEST_USERS))
    os.chmod(etc / "shadow", 0o640)
    if encrypt_method is not None:
        (etc / "login.defs").write_text(f"# sandbox guest\nENCRYPT_METHOD {encrypt_method}\n")
    return path


def destroy_domain(address: str, domid: int) -> None:
    """Remove a domain's tree, as the toolstack does when the guest shuts down or reboots (new domid)."""
    with XenStore(address, "") as xs:
        xs.delete(f"/local/domain/{domid}")


class Sandbox:
    """xenstored, one guest domain, and the agent serving it as a child process: the local demo.

    The agent acts inside a guest root of its own (``--root``): its journal lives there, and passwords it
    sets change that root's shadow file.
    """

    def __init__(self, directory: Path, domid: int = 5, agent_args: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.domid = domid
        self.agent_args = agent_args
        self.xenstored = Xenstored(self.directory / "xenstored")
        self.domain_path = ""
        self.agent: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.directory / "guest-root"

    @property
    def state_dir(self) -> Path:
        return rooted(str(self.root), STATE_DIR)

    @property
    def agent_log(self) -> Path:
        return self.directory / "agent.log"

    def start(self) -> None:
        self.xenstored.start()
        self.domain_path = create_domain(self.xenstored.address, self.domid)
        if not (self.root / "etc/shadow").exists():
            make_guest_root(self.root)
        command = [sys.executable, "-m", "agent", "run", "--xenstore", self.xenstored.address,
                   "--domain-path", self.domain_path, "--root", str(self.root), "--state-dir", STATE_DIR,
                   *self.agent_args]
        with self.agent_log.open("ab") as log_file:
            self.agent = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env={**os.environ, **self.xenstored.env})

    def agent_exited(self) -> int | None:
        return None if self.agent is None else self.agent.poll()

    def stop(self) -> None:
        agent, self.agent = self.agent, None
        stop_process(agent, timeout=15)
        self.xenstored.stop()

    def __enter__(self) -> Sandbox:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
