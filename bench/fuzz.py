"""A long fuzz run: generated request bodies flooded into a real agent process on a real xenstored.

The bodies are those of the CI fuzz test (hypothesis with a fixed seed, plus byte-level mutations), in
larger numbers and with another seed per run. The host keeps at most 300 requests unanswered and removes
each reply after reading it. Prints what was sent and answered, the replies by return code, the rate, the
agent's memory at the end and whether its journal verifies; the agent must still be running.
Usage: python bench/fuzz.py [BODIES] [SEED]   (default 200,000 bodies, seed 1; a fifth of them from
hypothesis, which generates about 600 a second)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import bench_xenstored, new_domain, start_agent

from agent.journal import Journal
from agent.xenstore import XenStore
from tests import fuzzing


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(count: int, seed: int) -> None:
    generated = time.perf_counter()
    bodies = fuzzing.hypothesis_bodies(count // 5) + list(fuzzing.mutated_bodies(count - count // 5, seed))
    generated = time.perf_counter() - generated
    with bench_xenstored() as (daemon, directory):
        domain = new_domain(daemon, 5)
        state = directory / "state"
        agent = start_agent(daemon, domain, state, directory / "agent.log")
        with XenStore(daemon.address, domain) as xenstore:
            started = time.perf_counter()
            result = fuzzing.flood(xenstore, bodies)
            elapsed = time.perf_counter() - started
        alive = agent.poll() is None
        memory = rss_mb(agent.pid) if alive else 0.0
        agent.terminate()
        agent.wait()
        journal = Journal.open_readonly(state)
        verified = time.perf_counter()
        verification = journal.verify()
        verified = time.perf_counter() - verified
        journal.close()
        tracebacks = (directory / "agent.log").read_text(errors="replace").count("Traceback")
    print(f"conditions: real xenstored, agent process with its defaults (journal on disk, synchronous=FULL, "
          f"max_commands 50,000), {len(bodies):,} bodies (seed {seed}; {count // 5:,} from hypothesis), "
          f"host window 300, replies removed after reading")
    print(f"generated in {generated:.1f} s; flooded in {elapsed:.1f} s ({result.sent / elapsed:,.0f} requests/s)")
    print(f"sent {result.sent:,}, answered {result.answered:,}, protocol violations {len(result.bad)}")
    print(f"replies: {dict(sorted(result.returncodes.items()))}")
    print(f"agent alive at the end: {alive}; RSS {memory:.1f} MB; tracebacks in its log: {tracebacks}")
    print(f"journal verify: {'ok' if verification.ok else 'FAILED: ' + verification.problem} "
          f"({verification.rows:,} rows in {verified:.1f} s)")
    for line in result.bad[:10]:
        print(f"  bad reply {line}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
