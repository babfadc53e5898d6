"""How the agent and its journal tools behave with a big journal (default 1,000,000 commands).

The journal is pre-filled offline with N answered, delivered `version` commands through agent.journal.Journal
(bench/prefill.py, 10,000 per transaction), checkpointed, and kept in --cache DIR (default: a directory under
the system's temp dir named after N), so that reruns skip the fill. Every agent runs on a copy of it.

    round trip on N vs empty   p50 of `version` (clean caller) for an agent on the full journal and one on an
                               empty journal, called alternately (goal: within 10%)
    journal list               `openstack-agent journal list --state-dir DIR` (first page) as a subprocess
                               (goal <= 0.2 s), and in-process (agent.cli.main, imports excluded)
    journal show <request id>  the same for `journal show` of a request in the middle (goal <= 50 ms)
    bytes per command          the journal's files after a checkpoint / N (goal <= 600)
    prune hold                 an agent started with --max-commands PRUNE_TO (< N) prunes at its first
                               housekeeping while a client keeps calling `version`; the longest round trip
                               during the prune, less the p50 after it (goal: no request held > 10 ms); and
                               the same measure, as many calls, with an agent that does not prune

Usage: python bench/journal_scale.py [N] [--calls 500] [--prune-to M] [--cache DIR]
    (PRUNE_TO defaults to 98% of N: one on-the-spot prune's worth, journal.max_commands x 1.02)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    VERSION_BODY,
    Caller,
    Figure,
    ReplyWatcher,
    bench_xenstored,
    checkpoint,
    conditions,
    journal_files_size,
    ms,
    new_domain,
    new_ids,
    percentile,
    prefill,
    print_report,
    start_agent,
    stop,
    write_requests,
)

GOAL_RATIO = 1.10
GOAL_LIST = 0.2
GOAL_SHOW = 0.05
GOAL_BYTES = 600
GOAL_HOLD = 0.010
REPEATS = 5

IN_PROCESS = """
import io, sys, time
from agent.cli import main
argv = sys.argv[1:]
times = []
for _ in range({repeats}):
    started = time.perf_counter()
    code = main(argv, out=io.StringIO())
    times.append(time.perf_counter() - started)
    assert code == 0, code
print(min(times))
"""


def cached_journal(cache: Path, commands: int) -> tuple[Path, str]:
    """The pre-filled journal's directory (filled now unless the cache has it), and how it was obtained."""
    done = cache / "complete"
    if done.exists() and done.read_text().strip() == str(commands):
        return cache, "from the cache"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    seconds = prefill(cache, commands)
    checkpoint(cache)
    done.write_text(f"{commands}\n")
    return cache, f"filled in {seconds:.0f} s ({commands / seconds:,.0f} commands/s)"


def copy_journal(cache: Path, state: Path) -> None:
    """Copy the cached journal for one agent, and write it out to the disk before the agent starts: a journal
    of a million commands has been on disk a long time, while a fresh copy's writeback (1.4 GB) would make
    the agent's first durable commits wait behind it, a cost of the copy and not of the journal."""
    state.mkdir(parents=True)
    for path in cache.glob("journal.sqlite3*"):
        shutil.copy(path, state / path.name)
    os.sync()


def middle_request(cache: Path, commands: int) -> str:
    """A request id from the middle of the journal, read through the agent's API in a separate process."""
    code = ("import sys; from pathlib import Path; from agent.journal import Journal; "
            "j = Journal.open_readonly(Path(sys.argv[1])); print(j.get(int(sys.argv[2])).request_id)")
    return subprocess.run([sys.executable, "-c", code, str(cache), str(max(1, commands // 2))], check=True,
                          capture_output=True, text=True).stdout.strip()


def cli_times(argv: list[str]) -> tuple[float, float]:
    """(best wall time of the command as a subprocess, best in-process time of agent.cli.main) over REPEATS."""
    command = [str(Path(sys.executable).with_name("openstack-agent")), *argv]
    walls = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
    inner = subprocess.run([sys.executable, "-c", IN_PROCESS.format(repeats=REPEATS), *argv], check=True,
                           capture_output=True, text=True).stdout.strip()
    return min(walls), float(inner)


def round_trips(cache: Path, commands: int, calls: int) -> tuple[list[float], list[float]]:
    """Clean `version` round trips of an agent on a copy of the full journal and one on an empty journal,
    called alternately."""
    with bench_xenstored() as (daemon, directory):
        full_domain, empty_domain = new_domain(daemon, 1), new_domain(daemon, 2)
        copy_journal(cache, directory / "full")
        limit = ("--max-commands", str(2 * commands))  # keep the full journal whole
        agents = [start_agent(daemon, full_domain, directory / "full", directory / "full.log", *limit),
                  start_agent(daemon, empty_domain, directory / "empty", directory / "empty.log", *limit)]
        callers: list[Caller] = []
        try:
            time.sleep(2.0)
            callers = [Caller(daemon, full_domain, clean=True), Caller(daemon, empty_domain, clean=True)]
            for _ in range(max(20, calls // 10)):
                for caller in callers:
                    caller.call(VERSION_BODY)
            full, empty = [], []
            for _ in range(calls):
                full.append(callers[0].call(VERSION_BODY))
                empty.append(callers[1].call(VERSION_BODY))
        finally:
            for caller in callers:
                caller.close()
            for agent in agents:
                stop(agent)
    return full, empty


PRUNED = re.compile(r"removed (\d+) commands from the journal")


def prune_hold(cache: Path, commands: int, prune_to: int | None, after: int, calls: int = 0
               ) -> tuple[list[float], float, int, float, float]:
    """(every round trip during the prune, p50 after it, commands pruned, prune's duration as the client saw
    it, launch to first reply on the full journal). With ``prune_to`` None, the same measure with no prune: an
    agent that has nothing to prune (its bounds far off), called ``calls`` times: what the machine itself holds
    requests up."""
    due = commands + 1 - prune_to if prune_to is not None else 0  # the journal, the first request, down to it
    bounds = (["--max-commands", str(prune_to)] if prune_to is not None
              else ["--max-commands", str(commands * 2), "--retention-days", "100000"])
    with bench_xenstored() as (daemon, directory):
        domain = new_domain(daemon, 3)
        state = directory / "state"
        copy_journal(cache, state)
        log = directory / "agent.log"
        watcher = ReplyWatcher(daemon, domain)
        first = new_ids(1)
        watcher.expect(first)
        write_requests(daemon, domain, first)
        started = time.perf_counter()
        agent = start_agent(daemon, domain, state, log, *bounds, "--keep-min", "1000", "--log-level", "info")
        caller = None
        try:
            if not watcher.wait(first, 120):
                raise RuntimeError("the agent did not answer within 120 s")
            first_reply = watcher.seen[first[0]] - started
            caller = Caller(daemon, domain, clean=True)
            during: list[float] = []
            prune_started = time.perf_counter()
            pruned = None
            # The prune is over once the log's "removed N commands" lines add up to what it must remove
            # (one line for the whole prune today; a sum, should the agent log each part).
            while pruned is None:
                during.append(caller.call(VERSION_BODY))
                total = sum(int(n) for n in PRUNED.findall(log.read_text(errors="replace")))
                if (prune_to is not None and total >= due) or (prune_to is None and len(during) >= calls):
                    pruned = total
                elif time.perf_counter() - prune_started > 600:
                    raise RuntimeError("no prune seen in the agent's log within 600 s")
            prune_seconds = time.perf_counter() - prune_started
            normal = [caller.call(VERSION_BODY) for _ in range(after)]
            if prune_to is None and PRUNED.search(log.read_text(errors="replace")):
                raise RuntimeError("the agent pruned during the measure with no prune")
        finally:
            if caller is not None:
                caller.close()
            watcher.close()
            stop(agent)
    return during, percentile(normal, 0.5), pruned, prune_seconds, first_reply


def run(commands: int = 1_000_000, calls: int = 500, prune_to: int | None = None, cache: Path | None = None
        ) -> tuple[list[Figure], str]:
    prune_to = prune_to if prune_to is not None else commands - commands // 50
    cache = cache or Path(tempfile.gettempdir()) / f"openstack-agent-bench-journal-{commands}"
    cache, origin = cached_journal(cache, commands)
    size = journal_files_size(cache)
    request_id = middle_request(cache, commands)
    list_wall, list_inner = cli_times(["journal", "list", "--state-dir", str(cache)])
    show_wall, show_inner = cli_times(["journal", "show", "--state-dir", str(cache), request_id])
    full, empty = round_trips(cache, commands, calls)
    after = max(100, calls // 5)
    during, normal, pruned, prune_seconds, first_reply = prune_hold(cache, commands, prune_to, after)
    quiet, quiet_normal, _, _, _ = prune_hold(cache, commands, None, after, calls=len(during))
    f50, e50 = percentile(full, 0.5), percentile(empty, 0.5)
    longest = max(during)
    hold, quiet_hold = longest - normal, max(quiet) - quiet_normal
    figures = [
        Figure(f"round trip p50, journal of {commands:,} / empty", f"{ms(f50)} / {ms(e50)}",
               f"within {GOAL_RATIO - 1:.0%}", f50 <= e50 * GOAL_RATIO,
               f"ratio {f50 / e50:.2f}; p99 {ms(percentile(full, 0.99))} / {ms(percentile(empty, 0.99))}"),
        Figure("journal list (first page), subprocess", f"{list_wall:.3f} s", f"<= {GOAL_LIST} s",
               list_wall <= GOAL_LIST),
        Figure("journal list (first page), in-process", f"{list_inner:.3f} s", note="agent.cli.main, imports excluded"),
        Figure("journal show <request id>, subprocess", ms(show_wall), f"<= {GOAL_SHOW * 1e3:g} ms",
               show_wall <= GOAL_SHOW),
        Figure("journal show <request id>, in-process", ms(show_inner), f"<= {GOAL_SHOW * 1e3:g} ms",
               show_inner <= GOAL_SHOW, "agent.cli.main, imports excluded"),
        Figure("journal bytes per command", f"{size / commands:,.0f} B", f"<= {GOAL_BYTES} B",
               size / commands <= GOAL_BYTES, f"{size / 2**20:,.0f} MiB after a checkpoint"),
        Figure(f"prune of {pruned:,} commands: request held beyond normal", ms(hold), f"<= {ms(GOAL_HOLD)}",
               hold <= GOAL_HOLD, f"longest round trip {ms(longest)} of {len(during):,}, p50 after {ms(normal)}; "
               f"{sum(t - normal > GOAL_HOLD for t in during)} held over {ms(GOAL_HOLD)}; "
               f"prune seen over {prune_seconds:.2f} s"),
        Figure("the same measure with no prune", ms(quiet_hold),
               note=f"as many calls on the same journal, its bound far off: what this machine holds requests up "
                    f"by itself (longest {ms(max(quiet))}, p50 after {ms(quiet_normal)})"),
        Figure(f"start to first reply, journal of {commands:,}", f"{first_reply:.3f} s",
               note="no goal here; see resources.py"),
    ]
    return figures, conditions(journal=f"{commands:,} answered version commands, {origin}, cache {cache}, each "
                                       "agent on a copy written out to disk (sync) before it starts",
                               round_trip_calls=f"{calls} per agent, alternated, clean caller",
                               prune=f"--max-commands {prune_to:,} --keep-min 1000, pruned at the agent's first "
                                     "housekeeping while one client calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("commands", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--prune-to", type=int)
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args()
    figures, run_conditions = run(args.commands, args.calls, args.prune_to, args.cache)
    print_report("journal scale", figures, run_conditions)


if __name__ == "__main__":
    main()
