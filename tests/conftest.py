"""Fixtures that build the real parts: Debian's xenstored under its shim, guest domains, agents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent import __version__, install, release
from agent import config as agent_config
from agent.daemon import Agent
from agent.host import Host
from agent.journal import Journal, exchanges, releases
from agent.memstore import MemoryStore, MemoryXenStore
from agent.sandbox import Xenstored, build_shim, create_domain, make_guest_root
from agent.xenstore import Transport, XenStore
from tests.netns import Lan

DOMID = 5


@pytest.fixture(scope="session")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LD_PRELOAD library, built once per test session with gcc."""
    return build_shim(tmp_path_factory.mktemp("shim"))


@pytest.fixture
def xenstored(tmp_path: Path, shim: Path) -> Iterator[Xenstored]:
    """A real xenstored of this test's own; start failure fails the test (never skips)."""
    daemon = Xenstored(tmp_path / "xenstored", shim)
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def domain(xenstored: Xenstored) -> str:
    return create_domain(xenstored.address, DOMID)


@pytest.fixture
def guest(xenstored: Xenstored, domain: str) -> Iterator[XenStore]:
    """A dom0 connection rooted at the guest's home, for looking at data/host and data/guest."""
    with XenStore(xenstored.address, domain) as xs:
        yield xs


@pytest.fixture
def host(guest: XenStore) -> Host:
    """The host side, polling faster than nova's 0.5 s to keep the suite quick."""
    return Host(guest, poll_interval=0.01)


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a real tmpfs of a given size on a directory, ``tmpfs(path, "8m")``; unmounted at the end."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(path)], check=True)


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Lan]:
    """The lab network (``tests.netns``): a guest and a gateway namespace, and the guest's ifupdown image at
    ``tmp_path / "lan-root"``; a failure to build it fails the test (never skips). Deleted at the end."""
    with Lan(tmp_path / "lan-root") as made:
        yield made


#: Agents in tests act inside a throw-away system root (``--root``), as if it were the guest's: the real
#: chpasswd changes its shadow file, never this machine's, and the journal lives at the usual place in it.
STATE_DIR = "/var/lib/openstack-agent"


@pytest.fixture
def system_root(tmp_path: Path) -> Path:
    """A throw-away system root (passwd, shadow, login.defs) for the agent and the real chpasswd."""
    return make_guest_root(tmp_path / "root")


@pytest.fixture
def state_dir(system_root: Path) -> Path:
    """Where the test agents' journal is: the state directory inside the system root."""
    return agent_config.rooted(str(system_root), STATE_DIR)


def make_config(xenstored: Xenstored, domain: str, root: Path, **overrides: Any) -> agent_config.Config:
    return agent_config.from_overrides(**{"xenstore": xenstored.address, "domain_path": domain,
                                          "root": str(root), "state_dir": STATE_DIR, **overrides})


@dataclass
class ThreadAgent:
    """The agent running in a thread of the test process (fast; no crash semantics)."""

    agent: Agent
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(20)
        assert not self.thread.is_alive(), "the agent did not stop"


@pytest.fixture
def run_agent(xenstored: Xenstored, domain: str, system_root: Path) -> Iterator[Any]:
    """Start agents in threads: ``run_agent(**config_overrides)``, on the real xenstored or on the ``transport``
    given; all are stopped at the end."""
    started: list[ThreadAgent] = []

    def start(transport: Transport | None = None, ports: dict[str, Any] | None = None,
              **overrides: Any) -> ThreadAgent:
        """``ports``: ports to give the agent instead of its own (``files``, ``network``, ``licensing``)."""
        ready = threading.Event()
        agent = Agent(make_config(xenstored, domain, system_root, **overrides), on_ready=ready.set,
                      transport=transport, **(ports or {}))
        holder = ThreadAgent(agent, threading.Thread(target=lambda: _run(agent, holder), daemon=True))
        holder.thread.start()
        assert ready.wait(20), "the agent did not become ready"
        started.append(holder)
        return holder

    yield start
    for holder in started:
        holder.stop()


def _run(agent: Agent, holder: ThreadAgent) -> None:
    try:
        agent.run()
    except BaseException as exc:  # surfaced by the tests that look
        holder.errors.append(exc)
        raise


@dataclass
class AgentProcess:
    """The agent as a real process: ``python -m agent run``."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> AgentProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([*self.args, *extra], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env)
        return self

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def agent_process(xenstored: Xenstored, domain: str, system_root: Path, tmp_path: Path) -> Iterator[Any]:
    """Factory of agent processes on this test's xenstored: ``agent_process(*flags)``."""
    made: list[AgentProcess] = []

    def make(*flags: str, domain_path: str | None = None, prefix: Sequence[str] = (),
             root: Path | None = None) -> AgentProcess:
        """``prefix`` goes before the agent's argv (``lan.prefix`` runs it in the lab's guest namespace);
        ``root`` is its ``--root`` (``system_root`` by default)."""
        args = [*prefix, sys.executable, "-m", "agent", "run", "--xenstore", xenstored.address,
                "--domain-path", domain_path or domain, "--root", str(root or system_root), "--state-dir", STATE_DIR,
                "--log-level", "debug",
                *flags]
        proc = AgentProcess(args, {**os.environ, **xenstored.env}, tmp_path / "agent.log")
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(interval)


def open_journal(state_dir: Path) -> Journal:
    return Journal.open(state_dir)


def verdict_of(journal: Journal, version: str) -> tuple[str, str] | None:
    """What the journal knows of a release, as (state, reason)."""
    verdict = releases.verdict(journal, version)
    return None if verdict is None else (verdict.state, verdict.reason)


def holding(state_dir: Path, value: str) -> list[str]:
    """The files of the state directory (database, WAL, SHM) whose bytes contain ``value``. A running agent
    replaces some of its files through a temporary one (``agent.status``): one gone between the listing and
    the read held nothing any more."""
    found = []
    for path in state_dir.iterdir():
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        if value.encode() in data:
            found.append(path.name)
    return found


def exchange_state(state_dir: Path) -> str | None:
    """The state of the journal's latest key exchange (the journal is closed again at once)."""
    journal = open_journal(state_dir)
    try:
        exchange = exchanges.latest(journal)
        return None if exchange is None else exchange.state
    finally:
        journal.close()


@pytest.fixture
def chpasswd_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH directory whose chpasswd records each run, then runs the real one (for agents in threads)."""
    from tests.system import counting_chpasswd

    directory = counting_chpasswd(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return directory


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Real release bundles (this checkout, 0.2.0, and faulty 0.3.0 and 0.4.0), built once per session."""
    from tests.releases import build_all

    return build_all(tmp_path_factory.mktemp("releases"))


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[Any]:
    """A loopback HTTP server of tmp_path/www, with Range, If-Range and cut-off responses."""
    from tests.httpserver import FileServer

    (tmp_path / "www").mkdir()
    server = FileServer(tmp_path / "www")
    yield server
    server.stop()


@dataclass
class Service(AgentProcess):
    """The agent's service: the supervisor started from the current release (``args``), with its log."""

    layout: install.Layout = field(kw_only=True)

    def children(self) -> list[int]:
        """The supervisor's child processes (the agent, when one runs)."""
        assert self.process is not None
        pid = self.process.pid
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def agent_pid(self) -> int:
        children = self.children()
        assert len(children) == 1, children
        return children[0]


@pytest.fixture
def service(bundles, xenstored: Xenstored, domain: str, system_root: Path, state_dir: Path,
            tmp_path: Path) -> Iterator[Service]:
    """This checkout installed as the current release (marked good), and its supervisor, not yet started."""
    layout = install.Layout(agent_config.rooted(str(system_root), "/opt/openstack-agent"))
    install.install(release.open_bundle(bundles.base), layout)
    journal = Journal.open(state_dir)
    releases.mark(journal, __version__, "good", "installed by the test")
    journal.close()
    command = [str(layout.agent_command()), "supervise", "--root", str(system_root), "--xenstore",
               xenstored.address, "--domain-path", domain, "--state-dir", STATE_DIR, "--log-level", "debug",
               "--probation", "1", "--ready-deadline", "10"]
    made = Service(command, {**os.environ, **xenstored.env}, tmp_path / "service.log", layout=layout)
    yield made
    made.stop()


@pytest.fixture
def memory_store() -> MemoryStore:
    """An in-memory XenStore (``agent.memstore``) holding the guest's domain, as ``xenstored`` plus ``domain``
    give a real one: for tests of daemon logic that need no xenstored."""
    store = MemoryStore()
    store.create_domain(DOMID)
    return store


@pytest.fixture
def memory_guest(memory_store: MemoryStore) -> Iterator[MemoryXenStore]:
    """A connection to ``memory_store`` rooted at the guest's home: the in-memory ``guest``."""
    with memory_store.connection(f"/local/domain/{DOMID}") as xs:
        yield xs
