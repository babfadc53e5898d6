"""Resource figures of the agent as a real process on a real xenstored.

    start to first reply   time from launching `openstack-agent run` (a request already waiting) to its reply
    RSS after N commands   resident memory once N `version` commands have been answered
    idle CPU               CPU seconds the agent uses over an idle period (default 60 s)

Usage: python bench/resources.py [COMMANDS] [IDLE_SECONDS]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Caller, bench_xenstored, new_domain, start_agent

from agent.xenstore import XenStore

BODY = json.dumps({"name": "version", "value": "agent"})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    commands = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    idle = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    with bench_xenstored() as (daemon, directory), XenStore(daemon.address, new_domain(daemon, 3)) as xs:
        xs.write("data/host/first", BODY)
        started = time.perf_counter()
        agent = start_agent(daemon, xs.domain_path, directory / "state", directory / "agent.log")
        try:
            while xs.read("data/guest/first") is None:
                time.sleep(0.001)
            first_reply = time.perf_counter() - started
            caller = Caller(daemon, xs.domain_path)
            try:
                for _ in range(commands):
                    caller.call(BODY.encode())
            finally:
                caller.close()
            rss = rss_mb(agent.pid)
            before = cpu_seconds(agent.pid)
            time.sleep(idle)
            idle_cpu = cpu_seconds(agent.pid) - before
        finally:
            agent.terminate()
            agent.wait()
    print(f"start to first reply:   {first_reply:.3f} s (target <= 1.0 s)")
    print(f"RSS after {commands} commands: {rss:.1f} MB (target <= 50 MB)")
    print(f"idle CPU over {idle:g} s:     {idle_cpu:.3f} CPU-s ({idle_cpu * 60 / idle:.3f} per minute; "
          "target <= 0.05)")


if __name__ == "__main__":
    main()
