"""Round-trip latency of `version`: the agent (journal with synchronous=FULL) against a bare pyxs echo floor.

Both run as processes on the same real xenstored in the same run, called alternately, and a client times
each call from the request's write to the reply's appearance (through a watch, not nova's 0.5 s polling).
Prints p50 and p99 of each and the ratios. Usage: python bench/roundtrip.py [CALLS]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Caller, bench_xenstored, new_domain, percentile, start_agent

BODY = json.dumps({"name": "version", "value": "agent"}).encode()


def measure(floor: Caller, agent: Caller, calls: int) -> tuple[list[float], list[float]]:
    """Alternate the two sides call by call, so that both see the same machine load."""
    for _ in range(max(20, calls // 10)):  # warm-up
        floor.call(BODY)
        agent.call(BODY)
    floor_times, agent_times = [], []
    for _ in range(calls):
        floor_times.append(floor.call(BODY))
        agent_times.append(agent.call(BODY))
    return floor_times, agent_times


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with bench_xenstored() as (daemon, directory):
        echo_domain, agent_domain = new_domain(daemon, 1), new_domain(daemon, 2)
        echo = subprocess.Popen([sys.executable, str(Path(__file__).with_name("echo_responder.py")),
                                 str(daemon.socket_path), echo_domain])
        agent = start_agent(daemon, agent_domain, directory / "state", directory / "agent.log")
        callers: list[Caller] = []
        try:
            time.sleep(1.0)
            callers = [Caller(daemon, echo_domain), Caller(daemon, agent_domain)]
            floor, agent_times = measure(callers[0], callers[1], calls)
        finally:
            for caller in callers:
                caller.close()
            echo.terminate()
            agent.terminate()
            echo.wait()
            agent.wait()
    f50, f99 = percentile(floor, 0.5) * 1e3, percentile(floor, 0.99) * 1e3
    a50, a99 = percentile(agent_times, 0.5) * 1e3, percentile(agent_times, 0.99) * 1e3
    print(f"calls per side: {calls}")
    print(f"bare echo (floor): p50 {f50:.3f} ms  p99 {f99:.3f} ms")
    print(f"agent version:     p50 {a50:.3f} ms  p99 {a99:.3f} ms")
    print(f"ratio agent/floor: p50 {a50 / f50:.2f}x  p99 {a99 / f99:.2f}x  (targets: <= 2x, <= 3x)")


if __name__ == "__main__":
    main()
