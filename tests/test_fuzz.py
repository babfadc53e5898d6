"""Fuzzing of request bodies: the parser, the receive path, and 100,000 bodies through a real agent.

Whatever the body, the agent answers or rejects it and stays up, and its journal verifies afterwards.
"""

from __future__ import annotations

import base64
import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import crypto, protocol
from agent.host import Host
from agent.machines import REGISTRY, Rejected
from agent.machines.base import stored_value
from agent.xenstore import XenStore
from tests import fuzzing
from tests.conftest import open_journal

PRINTABLE = "".join(c for c in string.printable if " " <= c <= "~")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
PRINTABLE_BODIES = st.one_of(
    # What a host can write: XenStore values are non-empty and printable 7-bit ASCII.
    st.text(alphabet=PRINTABLE, min_size=1, max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v)),
    st.fixed_dictionaries({"name": JSON_VALUES | st.sampled_from(["version", "features", "password"]),
                           "value": JSON_VALUES}).map(json.dumps),
)


@pytest.fixture(scope="module")
def scratch_journal(tmp_path_factory: pytest.TempPathFactory):
    journal = open_journal(tmp_path_factory.mktemp("state"))
    yield journal
    journal.close()


@settings(max_examples=3000, deadline=None)
@given(body=st.binary(max_size=600) | fuzzing.BODIES)
def test_parse_and_journal_never_raise(scratch_journal, body: bytes) -> None:
    """Any bytes or JSON at all (deep nesting, lone surrogates, huge numbers, every type for name and value)
    parse to a command or a 500 rejection, never an exception, and what parsing yields can be journaled."""
    request = protocol.parse("id", body)
    assert request.name is not None or request.rejection is not None
    assert request.rejection is None or request.rejection.returncode == "500"
    machine = REGISTRY.get(request.name or "", Rejected) if request.rejection is None else Rejected
    stored = stored_value(machine, request.value)
    if stored is not None:
        json.loads(stored)  # recovery reads it back
    scratch_journal.receive("id", "/local/domain/5", request.name, machine.NAME, request.digest, stored)


FUZZ_HYPOTHESIS = 15_000
FUZZ_MUTATED = 85_000


def test_a_hundred_thousand_bodies_through_the_agent(agent_process, guest: XenStore, state_dir: Path,
                                                    tmpfs) -> None:
    """100,000 generated bodies (hypothesis with a fixed seed, plus byte-level mutations) written raw to the
    real xenstored: the agent answers every one with a reply from the protocol's set, stays up, and its
    journal (pruned past journal.max_commands along the way) verifies."""
    tmpfs(state_dir, "512m")  # the journal's fsyncs are not what is fuzzed here
    bodies = fuzzing.hypothesis_bodies(FUZZ_HYPOTHESIS) + list(fuzzing.mutated_bodies(FUZZ_MUTATED, seed=8))
    agent = agent_process("--log-level", "warning", "--max-commands", "20000").start()
    result = fuzzing.flood(guest, bodies)
    assert result.bad == []
    assert (result.sent, result.answered) == (len(bodies), len(bodies)), "requests went unanswered"
    assert agent.process.poll() is None, "the agent died"
    assert guest.list(protocol.HOST_DIR) == []
    journal = open_journal(state_dir)
    assert journal.verify().ok
    assert len(journal.commands()) <= 20_000 * 1.02, "the journal grew past journal.max_commands"
    assert "Traceback" not in agent.log()


@pytest.fixture
def agent(run_agent):
    """One agent for all of a test's examples (function-scoped fixtures are set up once per test)."""
    return run_agent()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=PRINTABLE_BODIES)
def test_agent_answers_every_body(agent, host: Host, body: str) -> None:
    """Whatever the body, the reply is a JSON object with a string returncode from the protocol's set."""
    reply = host.raw(body, timeout=20)
    assert set(reply) == {"returncode", "message"}
    assert reply["returncode"] in {"0", "404", "500"}


PUBLIC_KEYS = st.one_of(
    st.integers(min_value=-5, max_value=2**110).map(str),
    st.integers(min_value=2, max_value=crypto.PRIME - 2),
    st.text(alphabet="0123456789 +-.e", max_size=40),
    JSON_VALUES,
)
CIPHERTEXTS = st.one_of(
    st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet=string.ascii_letters + string.digits + "+/= \n", max_size=120),
    JSON_VALUES,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(public_key=PUBLIC_KEYS, ciphertext=CIPHERTEXTS)
def test_keyinit_and_password_values(agent, host: Host, state_dir: Path, public_key: object,
                                     ciphertext: object) -> None:
    """Any keyinit and password values get a reply from the protocol's set, and the journal stays consistent."""
    keyinit = host.call("keyinit", public_key, timeout=20)
    assert keyinit["returncode"] in {"D0", "500"}
    if keyinit["returncode"] == "D0":
        assert 1 < int(keyinit["message"]) < crypto.PRIME - 1
    password = host.call("password", ciphertext, timeout=20)
    assert set(password) == {"returncode", "message"}
    assert password["returncode"] in {"0", "500"}
    assert open_journal(state_dir).verify().ok
