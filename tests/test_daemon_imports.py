"""The daemon's path never loads SQLAlchemy or Alembic (their memory would stay for the process's life).

A real run in a fresh interpreter: an agent on the in-memory XenStore recovers an unfinished command, serves
every kind of command (version, features, rejections, keyinit and password with the real chpasswd,
injectfile, resetnetwork failing as its port refuses to apply outside a namespace of its own, agentupdate
failing its download, release verdicts), defers a wipe behind a reader and finishes it, collects replies and
prunes the journal; then the modules it loaded are listed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, sqlite3, sys, threading, time
from pathlib import Path

from agent import config as agent_config
from agent.daemon import Agent
from agent.host import Host
from agent.journal import Journal, releases
from agent.memstore import MemoryStore
from agent.platform.linux import Linux
from agent.protocol import GUEST_DIR, HOST_DIR, digest
from agent.runtime import Standalone
from agent.sandbox import make_guest_root

DOMID, STATE_DIR = 5, "/var/lib/openstack-agent"

work = Path(sys.argv[1])
root = make_guest_root(work / "root")
state = agent_config.rooted(str(root), STATE_DIR)
home = f"/local/domain/{DOMID}"
store = MemoryStore()
store.create_domain(DOMID)
host = Host(store.connection(home), poll_interval=0.002)

# An unfinished command left by an earlier process, its request still waiting: recovered at start.
journal = Journal.open(state)
journal.receive("left", home, "version", "version", digest(b'{"name": "version", "value": "agent"}'), '"agent"')
journal.close()
store.connection(home).write(f"{HOST_DIR}/left", '{"name": "version", "value": "agent"}')

config = agent_config.from_overrides(root=str(root), state_dir=STATE_DIR, domain_path=home,
                                     housekeeping_interval="1s", reply_max_age="1s", keep_min=2, max_commands=4,
                                     retention_days="1s")
ready = threading.Event()
agent = Agent(config, on_ready=ready.set, transport=store.connection(home), accounts=Linux(str(root)),
              runtime=Standalone())
thread = threading.Thread(target=agent.run, daemon=True)
thread.start()
assert ready.wait(20), "not ready"
replies = {}
deadline = time.monotonic() + 10
while store.connection(home).read(f"{GUEST_DIR}/left") is None:
    assert time.monotonic() < deadline, "the unfinished command was not recovered"
    time.sleep(0.01)
replies["recovered"] = json.loads(store.connection(home).read(f"{GUEST_DIR}/left"))["returncode"]
replies["version"] = host.call("version", "agent")["returncode"]
replies["features"] = host.call("features", "")["returncode"]
replies["unknown"] = host.call("nosuchcommand", "")["returncode"]
replies["malformed"] = host.raw("not json")["returncode"]
# A reader holds the checkpoint off while the password's exchange is wiped: the wipe is deferred, then done.
reader = sqlite3.connect(state / "journal.sqlite3", isolation_level=None)
reader.execute("BEGIN")
reader.execute("SELECT count(*) FROM commands").fetchone()
replies["password"] = host.set_password("No-SQLAlchemy-1")["returncode"]
deferred = agent.journal.wipe_deferred_at is not None
reader.execute("ROLLBACK")
reader.close()
deadline = time.monotonic() + 10
while agent.journal.wipe_deferred_at is not None:
    assert time.monotonic() < deadline, "the deferred wipe never ran"
    time.sleep(0.05)
replies["injectfile"] = host.inject_file("/root/.ssh/authorized_keys", b"\nssh-ed25519 AAAA test\n")["returncode"]
replies["resetnetwork"] = host.call("resetnetwork", "")["returncode"]
replies["agentupdate"] = host.call("agentupdate", "http://127.0.0.1:9/none.tar.gz,"
                                   "00000000000000000000000000000000")["returncode"]
releases.mark(agent.journal, "9.9.9", releases.BAD, "a test verdict")
assert releases.verdict(agent.journal, "9.9.9").bad
# Housekeeping: replies older than a second collected, the journal pruned to its bound.
deadline = time.monotonic() + 15
while agent.journal.command_count() > 4 or store.connection(home).list(GUEST_DIR):
    assert time.monotonic() < deadline, (agent.journal.command_count(), store.connection(home).list(GUEST_DIR))
    time.sleep(0.1)
agent.stop()
thread.join(20)
loaded = sorted(m for m in sys.modules if m.startswith(("sqlalchemy", "alembic")))
print(json.dumps({"replies": replies, "deferred": deferred, "loaded": loaded}))
'''


def test_a_daemon_that_served_everything_never_loaded_sqlalchemy(tmp_path: Path) -> None:
    """A daemon that recovered, answered every kind of command, deferred and finished a wipe, collected
    replies and pruned its journal has loaded neither SQLAlchemy nor Alembic."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["replies"] == {"recovered": "0", "version": "0", "features": "0", "unknown": "404",
                                  "malformed": "500", "password": "0", "injectfile": "0",
                                  "resetnetwork": "500", "agentupdate": "500"}, outcome
    assert outcome["deferred"], "the wipe was not deferred: the test did not exercise the retry"
    assert outcome["loaded"] == []


#: What only an update needs (downloads, bundles): a daemon that is not updating does not carry it.
UPDATE_ONLY = ("ssl", "http.client", "urllib.request", "tarfile", "zipfile")


def test_importing_the_daemon_loads_no_sqlalchemy_and_nothing_only_an_update_needs() -> None:
    """``import agent.daemon`` loads neither SQLAlchemy nor Alembic, nor the modules only agentupdate uses."""
    names = ["sqlalchemy", "alembic", *UPDATE_ONLY]
    script = f"import agent.daemon, sys; print([n for n in {names!r} if n in sys.modules])"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
