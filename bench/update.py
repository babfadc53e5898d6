"""Time of a good agentupdate, from the host's request to the agent's reply, from a loopback HTTP server.

Builds this checkout's bundle and the same source as 0.2.0, installs the first under a throw-away root,
runs the supervisor from it as the systemd unit does, serves the second over http on 127.0.0.1 and sends
agentupdate as nova does (its default timeout is 30 s). The figure includes the download, verification,
offline installation, the restart into the new release and its probation (update.probation, 5 s by
default). Usage: python bench/update.py [RUNS]
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from agent import __version__, install, release
from agent.host import Host
from agent.journal import Journal, releases
from agent.sandbox import STATE_DIR, Xenstored, create_domain, make_guest_root
from agent.xenstore import XenStore

ROOT = Path(__file__).resolve().parents[1]


def one_update(work: Path, base: Path, new: Path, port: int) -> float:
    system = make_guest_root(work / "root")
    layout = install.Layout(system / "opt/openstack-agent")
    install.install(release.open_bundle(base), layout)
    journal = Journal.open(system / STATE_DIR.lstrip("/"))
    releases.mark(journal, __version__, releases.GOOD, "bench")
    journal.close()
    daemon = Xenstored(work / "xenstored")
    daemon.start()
    domain = create_domain(daemon.address, 5)
    service = subprocess.Popen([str(layout.agent_command()), "supervise", "--root", str(system), "--xenstore",
                                daemon.address, "--domain-path", domain, "--state-dir", STATE_DIR],
                               env={**os.environ, **daemon.env}, stderr=(work / "service.log").open("wb"))
    try:
        with XenStore(daemon.address, domain) as xs:
            host = Host(xs, poll_interval=0.05)
            host.call("version", "agent", timeout=30)
            md5 = hashlib.md5(new.read_bytes()).hexdigest()
            start = time.perf_counter()
            reply = host.call("agentupdate", f"http://127.0.0.1:{port}/{new.name},{md5}", timeout=60)
            elapsed = time.perf_counter() - start
            assert reply["returncode"] == "0", reply
            assert host.call("version", "agent", timeout=30)["message"] == "0.2.0"
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
        daemon.stop()
    return elapsed


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    work = Path(tempfile.mkdtemp(prefix="openstack-agent-bench-update-"))
    base = release.build(work / "www", ROOT)
    new = release.build(work / "www", ROOT, "0.2.0")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(work / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    times = []
    for run in range(runs):
        times.append(one_update(work / f"run{run}", base, new, server.server_address[1]))
        print(f"run {run + 1}: agentupdate request to reply {times[-1]:.2f} s")
    server.shutdown()
    size = new.stat().st_size / 2**20
    shutil.rmtree(work, ignore_errors=True)
    print(f"bundle {size:.1f} MiB; request to reply: min {min(times):.2f} s, "
          f"max {max(times):.2f} s (nova's timeout: 30 s; includes 5 s of probation)")


if __name__ == "__main__":
    main()
