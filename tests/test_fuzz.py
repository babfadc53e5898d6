"""Property-based fuzzing of request bodies: the agent never crashes and every request gets one reply."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import protocol
from agent.host import Host

PRINTABLE = "".join(c for c in string.printable if " " <= c <= "~")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
BODIES = st.one_of(
    # What a host can write: XenStore values are non-empty and printable 7-bit ASCII.
    st.text(alphabet=PRINTABLE, min_size=1, max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v)),
    st.fixed_dictionaries({"name": JSON_VALUES | st.sampled_from(["version", "features", "password"]),
                           "value": JSON_VALUES}).map(json.dumps),
)


@given(st.binary(max_size=600))
def test_parse_never_raises(body: bytes) -> None:
    """Any bytes at all parse to a command name or a 500 rejection, never an exception."""
    request = protocol.parse("id", body)
    assert request.name is not None or request.rejection is not None
    assert request.rejection is None or request.rejection.returncode == "500"


@pytest.fixture
def agent(run_agent):
    """One agent for all of a test's examples (function-scoped fixtures are set up once per test)."""
    return run_agent()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_agent_answers_every_body(agent, host: Host, body: str) -> None:
    """Whatever the body, the reply is a JSON object with a string returncode from the protocol's set."""
    reply = host.raw(body, timeout=20)
    assert set(reply) == {"returncode", "message"}
    assert reply["returncode"] in {"0", "404", "500"}
