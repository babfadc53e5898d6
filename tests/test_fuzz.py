"""Property-based fuzzing of request bodies: the agent never crashes and every request gets one reply."""

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
from tests.conftest import open_journal

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
