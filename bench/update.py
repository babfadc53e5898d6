"""agentupdate timings, from a loopback HTTP server: a good update, and a crashing release's rollback.

Builds this checkout's bundle, the same source as 0.2.0 (good) and as 0.3.0 with a start-up crash built in
(``release.build(..., startup_fault="crash")``, as tests/releases.py builds the broken releases the update
tests use), installs the first under a throw-away root, runs the supervisor from it as the systemd unit does,
serves the others over http on 127.0.0.1 and sends agentupdate as nova does (its default timeout is 30 s).

    good update     request to reply (download, verification, offline installation, the restart into the new
                    release and its probation, update.probation, 5 s by default), then `version` says 0.2.0
    crash rollback  request until the OLD version answers `version` again (goal <= 10 s): the new release
                    crashes at start until update.crash_limit, is marked bad and rolled back; the
                    agentupdate reply ("500 ... rolled back") is timed too

Usage: python bench/update.py [RUNS]    (runs of each; default 3)
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Figure, conditions, print_report

from agent import __version__, install, release
from agent.host import Host
from agent.journal import Journal, releases
from agent.sandbox import STATE_DIR, Xenstored, create_domain, make_guest_root
from agent.xenstore import XenStore

ROOT = Path(__file__).resolve().parents[1]
GOAL_ROLLBACK = 10.0
NOVA_TIMEOUT = 30.0


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def service_env() -> dict[str, str]:
    """The environment for the installed service: without PYTHONPATH, which would make the releases import
    the bench's agent instead of their own."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def one_update(work: Path, base: Path, new: Path, port: int, expected: str) -> tuple[float, float, dict[str, str]]:
    """(request to the agentupdate reply, request to `version` answering ``expected``, the reply)."""
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
                               env={**service_env(), **daemon.env}, stderr=(work / "service.log").open("wb"))
    try:
        with XenStore(daemon.address, domain) as xs:
            host = Host(xs, poll_interval=0.05)
            host.call("version", "agent", timeout=30)
            md5 = hashlib.md5(new.read_bytes()).hexdigest()
            start = time.perf_counter()
            reply = host.call("agentupdate", f"http://127.0.0.1:{port}/{new.name},{md5}", timeout=120)
            replied = time.perf_counter() - start
            while True:
                version = host.call("version", "agent", timeout=60)["message"]
                if version == expected:
                    answered = time.perf_counter() - start
                    break
                if time.perf_counter() - start > 120:
                    raise RuntimeError(f"`version` still says {version}, not {expected}, 120 s after the "
                                       f"agentupdate request; its reply was {reply}")
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
        daemon.stop()
    return replied, answered, reply


def run(runs: int = 3) -> tuple[list[Figure], str]:
    work = Path(tempfile.mkdtemp(prefix="openstack-agent-bench-update-"))
    try:
        base = release.build(work / "www", ROOT)
        good = release.build(work / "www", ROOT, "0.2.0")
        crash = release.build(work / "www", ROOT, "0.3.0", startup_fault="crash")
        handler = functools.partial(QuietHandler, directory=str(work / "www"))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        good_times, crash_times, crash_replies, last_reply = [], [], [], {}
        for number in range(runs):
            replied, _answered, reply = one_update(work / f"good{number}", base, good, port, "0.2.0")
            assert reply["returncode"] == "0", reply
            good_times.append(replied)
            replied, answered, last_reply = one_update(work / f"crash{number}", base, crash, port, __version__)
            crash_replies.append(replied)
            crash_times.append(answered)
            print(f"run {number + 1}: good update {good_times[-1]:.2f} s to its reply; crashing release: reply "
                  f"{replied:.2f} s, old version answering {answered:.2f} s", file=sys.stderr)
        server.shutdown()
        size = good.stat().st_size / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = [
        Figure("good agentupdate: request to reply (max of runs)", f"{max(good_times):.2f} s",
               f"<= {NOVA_TIMEOUT:g} s (nova's timeout)", max(good_times) <= NOVA_TIMEOUT,
               f"min {min(good_times):.2f} s; includes 5 s of probation"),
        Figure("crashing release: request to old version answering", f"{max(crash_times):.2f} s",
               f"<= {GOAL_ROLLBACK:g} s", max(crash_times) <= GOAL_ROLLBACK, f"min {min(crash_times):.2f} s"),
        Figure("crashing release: request to its reply", f"{max(crash_replies):.2f} s",
               f"<= {NOVA_TIMEOUT:g} s (nova's timeout)", max(crash_replies) <= NOVA_TIMEOUT,
               f"reply {last_reply.get('returncode')}: {last_reply.get('message', '')[:140]}"),
    ]
    return figures, conditions(runs=runs, bundle=f"{size:.1f} MiB over http on 127.0.0.1",
                               service="supervise from the installed release, default update settings "
                                       "(probation 5 s, crash_limit 3 in 1 m, ready_deadline 20 s)")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    figures, run_conditions = run(runs)
    print_report("agentupdate", figures, run_conditions)


if __name__ == "__main__":
    main()
