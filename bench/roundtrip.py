"""Round-trip latency of `version`: the agent (its journal as it runs it, synchronous=FULL) against a bare pyxs
echo responder (the floor), in two modes, both printed:

    clean                    the caller deletes each reply once read, as nova's dom0 plugin does (the figure
                             that counts; goals p50 <= 1.3x floor, p99 <= 2x floor)
    replies left in place    the replies stay in data/guest until the agent collects them (replies.max_age)

Echo and agent run as processes on the same real xenstored in the same run, each in its own domain, and are
called alternately, call by call, so that both see the same machine load. A client times each call from the
request's write to the reply's appearance (through a watch on the reply's path, not nova's 0.5 s polling).

Usage: python bench/roundtrip.py [CALLS]    (calls per side and mode; default 1000)
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    VERSION_BODY,
    Caller,
    Figure,
    bench_xenstored,
    conditions,
    ms,
    new_domain,
    percentile,
    print_report,
    start_agent,
    start_echo,
    stop,
)

GOAL_P50, GOAL_P99 = 1.3, 2.0


def measure(floor: Caller, agent: Caller, calls: int) -> tuple[list[float], list[float]]:
    """Alternate the two sides call by call."""
    for _ in range(max(20, calls // 10)):  # warm-up
        floor.call(VERSION_BODY)
        agent.call(VERSION_BODY)
    floor_times, agent_times = [], []
    for _ in range(calls):
        floor_times.append(floor.call(VERSION_BODY))
        agent_times.append(agent.call(VERSION_BODY))
    return floor_times, agent_times


def durable_commit(directory: Path, commits: int = 300) -> float:
    """The median time of one small durable commit (SQLite WAL, synchronous=FULL) in ``directory``: what any
    journal that records a request before answering it must add to the floor, at the least."""
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        db = sqlite3.connect(Path(scratch) / "commit.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (v TEXT)")
        times = []
        for _ in range(commits):
            start = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?)", ("x" * 300,))
            db.execute("COMMIT")
            times.append(time.perf_counter() - start)
        db.close()
    return percentile(times, 0.5)


def limit_figures(floor: list[float], commit: float) -> list[Figure]:
    f50 = percentile(floor, 0.5)
    return [
        Figure("one durable commit (SQLite WAL, synchronous=FULL), p50", ms(commit),
               note="on the journal's disk"),
        Figure("physical limit: floor p50 + one durable commit", f"{ms(f50 + commit)}",
               note=f"{(f50 + commit) / f50:.2f}x the floor"),
    ]


def mode_figures(label: str, floor: list[float], agent: list[float], goals: bool) -> list[Figure]:
    f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
    a50, a99 = percentile(agent, 0.5), percentile(agent, 0.99)
    r50, r99 = a50 / f50, a99 / f99
    return [
        Figure(f"round trip, {label}: echo floor p50 / p99", f"{ms(f50)} / {ms(f99)}"),
        Figure(f"round trip, {label}: agent p50 / p99", f"{ms(a50)} / {ms(a99)}",
               note=f"max {ms(max(agent))}"),
        Figure(f"round trip, {label}: agent/floor p50", f"{r50:.2f}x",
               f"<= {GOAL_P50}x" if goals else "", r50 <= GOAL_P50 if goals else None,
               note="" if goals else "the goal applies to clean"),
        Figure(f"round trip, {label}: agent/floor p99", f"{r99:.2f}x",
               f"<= {GOAL_P99}x" if goals else "", r99 <= GOAL_P99 if goals else None,
               note="" if goals else "the goal applies to clean"),
    ]


def run(calls: int = 1000) -> tuple[list[Figure], str]:
    figures: list[Figure] = []
    # Each mode gets fresh domains, agent and echo, so that replies left by one mode do not weigh on the other.
    for label, clean, domid in (("clean", True, 1), ("replies left in place", False, 3)):
        with bench_xenstored() as (daemon, directory):
            echo_domain, agent_domain = new_domain(daemon, domid), new_domain(daemon, domid + 1)
            echo = start_echo(daemon, echo_domain)
            agent = start_agent(daemon, agent_domain, directory / "state", directory / "agent.log")
            callers: list[Caller] = []
            try:
                time.sleep(1.0)
                callers = [Caller(daemon, echo_domain, clean), Caller(daemon, agent_domain, clean)]
                floor, agent_times = measure(callers[0], callers[1], calls)
            finally:
                for caller in callers:
                    caller.close()
                stop(echo)
                stop(agent)
        figures += mode_figures(label, floor, agent_times, goals=clean)
        if clean:
            figures += limit_figures(floor, durable_commit(Path(tempfile.gettempdir())))
    return figures, conditions(calls_per_side_and_mode=calls, warm_up=max(20, calls // 10),
                               journal="fresh", sides="alternated call by call")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    figures, run_conditions = run(calls)
    print_report("version round trip: agent vs bare echo floor", figures, run_conditions)


if __name__ == "__main__":
    main()
