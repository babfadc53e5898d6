"""Shared set-up for the benchmarks: a real xenstored, domains, an agent process, timing clients, the machine's
conditions, pre-filled journals, and the figure lines every bench prints ("figure: measured (goal ...)").

The benches talk to the agent only as a process over XenStore, and to its journal only through
``agent.journal.Journal`` (in a separate process, ``bench/prefill.py``), so that they keep working as the
agent's insides change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import queue
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyxs

from agent.sandbox import Xenstored, create_domain

BENCH = Path(__file__).resolve().parent
VERSION_BODY = json.dumps({"name": "version", "value": "agent"}).encode()


@contextlib.contextmanager
def bench_xenstored() -> Iterator[tuple[Xenstored, Path]]:
    """A real xenstored in a scratch directory (for the agents' state and logs too), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="openstack-agent-bench-"))
    daemon = Xenstored(directory / "xenstored", trace=False)  # as a production xenstored runs
    try:
        daemon.start()
        yield daemon, directory
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


def start_agent(daemon: Xenstored, domain: str, state_dir: Path, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--xenstore", daemon.address, "--domain-path", domain,
             "--state-dir", str(state_dir), "--log-level", "warning", *flags],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **daemon.env})


def start_echo(daemon: Xenstored, domain: str, batched: bool = False) -> subprocess.Popen[bytes]:
    """The floor: ``bench/echo_responder.py``, a bare pyxs responder with the same reply protocol; with
    ``batched``, ``bench/echo_batched.py``, which takes requests in groups over the agent's XenStore calls."""
    script = "echo_batched.py" if batched else "echo_responder.py"
    return subprocess.Popen([sys.executable, str(BENCH / script), str(daemon.socket_path), domain])


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Caller:
    """Times round trips: write data/host/<id>, block on a watch of data/guest/<id> until the reply.

    ``clean``: delete the reply once read, as nova's dom0 plugin does (outside the timed part); otherwise the
    replies stay in data/guest until the agent collects them (``replies.max_age``).
    """

    def __init__(self, daemon: Xenstored, domain: str, clean: bool = False) -> None:
        self.domain = domain
        self.clean = clean
        self.client = pyxs.Client(unix_socket_path=str(daemon.socket_path))
        self.client.connect()
        self.monitor = self.client.monitor()

    def call(self, body: bytes) -> float:
        request_id = str(uuid.uuid4()).encode()
        reply_path = f"{self.domain}/data/guest/".encode() + request_id
        self.monitor.watch(reply_path, request_id)
        next(self.monitor.wait())  # the watch fires once when set
        start = time.perf_counter()
        self.client.write(f"{self.domain}/data/host/".encode() + request_id, body)
        while True:
            next(self.monitor.wait())
            if self.client.read(reply_path, b"") != b"":
                elapsed = time.perf_counter() - start
                break
        self.monitor.unwatch(reply_path, request_id)
        if self.clean:
            self.client.delete(reply_path)
        return elapsed

    def close(self) -> None:
        self.monitor.close()
        self.client.close()


class ReplyWatcher:
    """Sees replies appear through one watch of data/guest (never by polling each request): a thread takes
    the watch events off pyxs's queue and notes when each expected reply was first written."""

    def __init__(self, daemon: Xenstored, domain: str) -> None:
        self.guest = f"{domain}/data/guest"
        self.client = pyxs.Client(unix_socket_path=str(daemon.socket_path))
        self.client.connect()
        self.monitor = self.client.monitor()
        self.expected: set[str] = set()
        self.seen: dict[str, float] = {}
        self.changed = threading.Condition()
        self._stopping = False
        self.monitor.watch(self.guest.encode(), b"bench-replies")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def expect(self, request_ids: Iterable[str]) -> None:
        with self.changed:
            self.expected.update(request_ids)

    def _run(self) -> None:
        prefix = self.guest + "/"
        while not self._stopping:
            try:
                event = self.monitor.events.get(timeout=0.1)
            except queue.Empty:
                continue
            at = time.perf_counter()
            path = event.path.decode(errors="replace")
            if not path.startswith(prefix):
                continue
            request_id = path[len(prefix):].split("/", 1)[0]
            with self.changed:
                if request_id in self.expected and request_id not in self.seen:
                    self.seen[request_id] = at
                    self.changed.notify_all()

    def wait(self, request_ids: Iterable[str], timeout: float) -> bool:
        """Block until every one of ``request_ids`` has a reply, or ``timeout`` seconds; True if all came."""
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout
        with self.changed:
            while not wanted <= self.seen.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        self._stopping = True
        self.thread.join()
        self.monitor.close()
        self.client.close()


def write_requests(daemon: Xenstored, domain: str, request_ids: list[str], body: bytes = VERSION_BODY,
                   writers: int = 1) -> tuple[float, float]:
    """Write one request per id into data/host as fast as ``writers`` clients (threads, a pyxs connection each)
    can; return (perf_counter of the first write, of the last)."""
    host = f"{domain}/data/host/".encode()
    shares = [request_ids[i::writers] for i in range(writers)]
    clients = [pyxs.Client(unix_socket_path=str(daemon.socket_path)) for _ in shares]
    for client in clients:
        client.connect()
    stamps: list[float] = []
    barrier = threading.Barrier(len(shares))

    def write(client: pyxs.Client, ids: list[str]) -> None:
        barrier.wait()
        stamps.append(time.perf_counter())
        for request_id in ids:
            client.write(host + request_id.encode(), body)
        stamps.append(time.perf_counter())

    threads = [threading.Thread(target=write, args=pair) for pair in zip(clients, shares, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    return min(stamps), max(stamps)


def delete_nodes(daemon: Xenstored, paths: Iterable[str]) -> None:
    with pyxs.Client(unix_socket_path=str(daemon.socket_path)) as client:
        for path in paths:
            client.delete(path.encode())


def new_ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def new_domain(daemon: Xenstored, domid: int) -> str:
    return create_domain(daemon.address, domid)


# -- journals ---------------------------------------------------------------------------------------------

def prefill(state_dir: Path, commands: int, domain: str = "/local/domain/9", batch: int = 10_000) -> float:
    """Fill ``state_dir``'s journal with ``commands`` answered and delivered `version` commands, offline, in a
    separate process (``bench/prefill.py``, through ``agent.journal.Journal``); return the seconds it took."""
    started = time.perf_counter()
    subprocess.run([sys.executable, str(BENCH / "prefill.py"), str(state_dir), str(commands), "--domain", domain,
                    "--batch", str(batch)], check=True)
    return time.perf_counter() - started


def journal_files_size(state_dir: Path) -> int:
    """Bytes of the journal's files (the database, its -wal and -shm)."""
    return sum(path.stat().st_size for path in state_dir.glob("journal.sqlite3*"))


def checkpoint(state_dir: Path) -> None:
    """Checkpoint the journal's WAL into the database and truncate it (no agent may be running on it)."""
    with contextlib.closing(sqlite3.connect(state_dir / "journal.sqlite3")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- conditions and figures -------------------------------------------------------------------------------

def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def journal_settings() -> str:
    """The SQLite settings the agent's journal runs with, read from a journal the agent's own code opens."""
    from agent.journal import Journal

    with tempfile.TemporaryDirectory(prefix="openstack-agent-bench-settings-") as scratch:
        journal = Journal.open(Path(scratch))
        try:
            driver = journal.driver
            mode = driver.execute("PRAGMA journal_mode").fetchone()[0]
            level = driver.execute("PRAGMA synchronous").fetchone()[0]
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, level)
        finally:
            journal.close()
    return f"journal_mode={mode}, synchronous={sync}"


def _filesystem(path: Path) -> str:
    best = ("?", "")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind, *_ = line.split()
            if str(path).startswith(mount) and len(mount) >= len(best[1]):
                best = (f"{kind} on {device}", mount)
    return best[0]


def agent_source() -> str:
    """Where the agent under measurement comes from: its package directory, and its commit when in a checkout."""
    import agent

    package = Path(agent.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(package)
    return f"{package} at {commit}{' with uncommitted changes' if dirty else ''}"


def conditions(**extra: object) -> str:
    """One block naming the machine and the run's conditions, printed with the figures."""
    from agent import __version__

    lines = [
        f"machine: {_cpu_model()}, {os.cpu_count()} CPUs; kernel {platform.release()}; "
        f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}",
        f"agent {__version__} from {agent_source()}",
        f"journal {journal_settings()}; scratch {tempfile.gettempdir()} "
        f"({_filesystem(Path(tempfile.gettempdir()))}); xenstored from Debian (no trace file)",
    ]
    if extra:
        lines.append("run: " + "; ".join(f"{key.replace('_', ' ')} {value}" for key, value in extra.items()))
    return "\n".join(f"  {line}" for line in lines)


@dataclasses.dataclass
class Figure:
    """One measured figure next to its goal. ``met`` is None when the figure has no goal."""

    name: str
    measured: str
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def line(self) -> str:
        verdict = "" if self.met is None else ("  [met]" if self.met else "  [NOT met]")
        goal = f"   goal {self.goal}" if self.goal else ""
        note = f"   ({self.note})" if self.note else ""
        return f"{self.name:<58} {self.measured:>24}{goal}{verdict}{note}"


def print_report(title: str, figures: list[Figure], run_conditions: str) -> None:
    print(f"== {title}")
    for figure in figures:
        print(figure.line())
    print("conditions:")
    print(run_conditions)
    sys.stdout.flush()


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"
