"""Resource figures of the agent as a real process on a real xenstored.

    start to first reply   time from launching `openstack-agent run` (a `version` request already waiting) to
                           its reply: with a fresh journal, and with one already holding JOURNAL commands
                           (pre-filled offline through agent.journal.Journal by bench/prefill.py; goal <= 0.3 s)
    RSS                    resident memory once FIRST (default 1,000) and MANY (default 100,000) `version`
                           commands have been answered (goal <= 30 MB, and flat: both printed with their
                           difference, and the samples in between)
    idle CPU               CPU seconds the agent uses over an idle period (default 60 s)

The commands are sent in windows of 250 requests written at once; each window's replies are seen through one
watch on data/guest and then deleted, as nova does. The agent runs with its default journal limits (so the
journal is pruned on the spot past journal.max_commands, as in service); the start-up runs use a
--max-commands above JOURNAL so that the pre-filled journal is kept whole.

Usage: python bench/resources.py [FIRST] [MANY] [JOURNAL] [IDLE_SECONDS]    (defaults 1000 100000 100000 60)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Figure,
    ReplyWatcher,
    bench_xenstored,
    delete_nodes,
    new_domain,
    new_ids,
    prefill,
    print_report,
    start_agent,
    stop,
    write_requests,
)
from common import conditions as machine_conditions

GOAL_RSS_MB = 30.0
GOAL_START = 0.3
GOAL_IDLE = 0.05  # CPU-seconds per minute
WINDOW = 250


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_to_first_reply(journal_commands: int) -> tuple[float, float]:
    """(launch to the first reply, seconds the offline pre-fill took)."""
    with bench_xenstored() as (daemon, directory):
        domain = new_domain(daemon, 3)
        state = directory / "state"
        filled = prefill(state, journal_commands) if journal_commands else 0.0
        watcher = ReplyWatcher(daemon, domain)
        first = new_ids(1)
        watcher.expect(first)
        write_requests(daemon, domain, first)
        started = time.perf_counter()
        agent = start_agent(daemon, domain, state, directory / "agent.log",
                            "--max-commands", str(max(50_000, 2 * journal_commands)))
        try:
            if not watcher.wait(first, 60):
                raise RuntimeError("no reply within 60 s")
        finally:
            stop(agent)
            watcher.close()
        return watcher.seen[first[0]] - started, filled


def memory_and_idle(first: int, many: int, idle: float) -> tuple[list[tuple[int, float]], float, float]:
    """RSS samples [(commands answered, MB)], idle CPU seconds, and the commands' rate."""
    samples: list[tuple[int, float]] = []
    marks = sorted({first, many, *range(many // 10, many + 1, max(1, many // 10))})
    with bench_xenstored() as (daemon, directory):
        domain = new_domain(daemon, 4)
        agent = start_agent(daemon, domain, directory / "state", directory / "agent.log")
        watcher = ReplyWatcher(daemon, domain)
        try:
            done, started = 0, time.perf_counter()
            for mark in marks:
                while done < mark:
                    ids = new_ids(min(WINDOW, mark - done))
                    watcher.expect(ids)
                    write_requests(daemon, domain, ids)
                    if not watcher.wait(ids, 60):
                        raise RuntimeError(f"replies missing after {done} commands")
                    delete_nodes(daemon, (f"{domain}/data/guest/{i}" for i in ids))
                    done += len(ids)
                samples.append((done, rss_mb(agent.pid)))
            rate = done / (time.perf_counter() - started)
            time.sleep(1.0)  # let the last replies' bookkeeping finish
            before = cpu_seconds(agent.pid)
            time.sleep(idle)
            idle_cpu = cpu_seconds(agent.pid) - before
        finally:
            watcher.close()
            stop(agent)
    return samples, idle_cpu, rate


def run(first: int = 1000, many: int = 100_000, journal: int = 100_000, idle: float = 60.0
        ) -> tuple[list[Figure], str]:
    fresh_start, _ = start_to_first_reply(0)
    full_start, filled = start_to_first_reply(journal)
    samples, idle_cpu, rate = memory_and_idle(first, many, idle)
    rss = dict(samples)
    growth = rss[many] - rss[first]
    per_minute = idle_cpu * 60 / idle
    figures = [
        Figure("start to first reply, fresh journal", f"{fresh_start:.3f} s", f"<= {GOAL_START} s",
               fresh_start <= GOAL_START),
        Figure(f"start to first reply, journal of {journal:,} commands", f"{full_start:.3f} s", f"<= {GOAL_START} s",
               full_start <= GOAL_START, f"pre-filled offline in {filled:.1f} s"),
        Figure(f"RSS after {first:,} commands", f"{rss[first]:.1f} MB", f"<= {GOAL_RSS_MB:g} MB",
               rss[first] <= GOAL_RSS_MB),
        Figure(f"RSS after {many:,} commands", f"{rss[many]:.1f} MB", f"<= {GOAL_RSS_MB:g} MB",
               rss[many] <= GOAL_RSS_MB),
        Figure(f"RSS growth from {first:,} to {many:,} commands", f"{growth:+.1f} MB", "flat (about 0)", None,
               "samples: " + ", ".join(f"{n:,}: {mb:.1f}" for n, mb in samples)),
        Figure(f"idle CPU over {idle:g} s", f"{per_minute:.3f} CPU-s/min", f"<= {GOAL_IDLE} CPU-s/min",
               per_minute <= GOAL_IDLE, f"{idle_cpu:.2f} CPU-s in all"),
    ]
    return figures, machine_conditions(
        commands=f"version, in windows of {WINDOW} written at once, replies deleted once seen ({rate:,.0f}/s)",
        memory_run_journal="fresh, default limits (journal.max_commands 50000)",
        start_journal=f"fresh, and pre-filled with {journal:,} answered version commands (--max-commands above it)")


def main() -> None:
    args = [int(a) for a in sys.argv[1:4]]
    idle = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    figures, run_conditions = run(*args, idle=idle)
    print_report("agent resources", figures, run_conditions)


if __name__ == "__main__":
    main()
