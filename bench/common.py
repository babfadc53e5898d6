"""Shared set-up for the benchmarks: a real xenstored, domains, an agent process, a timing client."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyxs

from agent.sandbox import Xenstored, create_domain


@contextlib.contextmanager
def bench_xenstored() -> Iterator[tuple[Xenstored, Path]]:
    """A real xenstored in a scratch directory (for the agents' state and logs too), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="openstack-agent-bench-"))
    daemon = Xenstored(directory / "xenstored")
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


class Caller:
    """Times round trips: write data/host/<id>, block on a watch of data/guest/<id> until the reply."""

    def __init__(self, daemon: Xenstored, domain: str) -> None:
        self.domain = domain
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
        return elapsed

    def close(self) -> None:
        self.monitor.close()
        self.client.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def new_domain(daemon: Xenstored, domid: int) -> str:
    return create_domain(daemon.address, domid)
