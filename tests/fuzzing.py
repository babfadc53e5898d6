"""Request bodies for fuzzing the agent, and a host that floods it with them over a real xenstored.

Two generators, both deterministic for a given seed: hypothesis strategies over arbitrary JSON (every type
for ``name`` and ``value``, deep nesting, lone surrogates, huge and non-finite numbers, raw UTF-8), and a
byte-level mutator of valid bodies (bit flips, insertions, deletions, splices, truncations, random bytes).
Used by ``tests/test_fuzz.py`` (a fixed seed in CI) and ``bench/fuzz.py`` (longer runs).
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pyxs._internal import NUL, Op

from agent import crypto
from agent.protocol import GUEST_DIR, HOST_DIR
from agent.xenstore import XenStore

#: What the agent may answer to any body at all (keyinit with a valid key is "D0").
RETURNCODES = frozenset({"0", "D0", "403", "404", "500"})
COMMAND_NAMES = ["version", "features", "keyinit", "password", "agentupdate", "resetnetwork", "injectfile"]
#: XenStore's message payload is 4096 bytes, path included.
MAX_BODY = 3500

# Text with every code point, lone surrogates included (hypothesis leaves them out unless told).
TEXT = st.text(st.characters(exclude_categories=()), max_size=24)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | TEXT
           | st.integers(min_value=2, max_value=crypto.PRIME - 2).map(str))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


def _nested(depth: int, kind: str, core: str) -> str:
    return ("[" * depth + core + "]" * depth) if kind == "array" else ('{"k":' * depth + core + "}" * depth)


def _dumps(document: Any, ascii_only: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


REQUESTS = st.builds(
    lambda name, value, extra, ascii_only: _dumps({"name": name, "value": value, **extra}, ascii_only),
    st.sampled_from(COMMAND_NAMES) | VALUES, VALUES, st.dictionaries(TEXT, VALUES, max_size=2), st.booleans())
BODIES = st.one_of(
    REQUESTS,
    st.builds(_dumps, VALUES, st.booleans()),  # any JSON document at all, objects without a name included
    st.builds(lambda depth, kind, core: _nested(depth, kind, core).encode(), st.integers(1, 1700),
              st.sampled_from(["array", "object"]), st.sampled_from(["1", '"x"', '{"name":"version"}', ""])),
    st.builds(lambda name, depth: b'{"name":"' + name.encode() + b'","value":' + _nested(depth, "array", "0").encode()
              + b"}",
              st.sampled_from(COMMAND_NAMES), st.integers(1, 1700)),
    st.builds(lambda digits, sign: b'{"name":"version","value":' + sign + b"9" * digits + b"}",
              st.integers(1, 6000), st.sampled_from([b"", b"-"])),
    st.sampled_from([b'{"name":"version","value":NaN}', b'{"name":"version","value":-Infinity}',
                     b'{"name":"version","value":1e999}', b'{"name":"\\ud800","value":""}',
                     b'{"name":"version","value":"\\udfff"}', b'{"name":"\\ud83d\\ude00"}', b"", b" ", b"\x00"]),
    st.binary(max_size=300),
).filter(lambda body: len(body) <= MAX_BODY)


def hypothesis_bodies(count: int) -> list[bytes]:
    """``count`` bodies from the strategies above, the same ones on every run (derandomized)."""
    bodies: list[bytes] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(BODIES)
    def collect(body: bytes) -> None:
        bodies.append(body)

    collect()
    return bodies


SEEDS = [b'{"name": "version", "value": "agent"}', b'{"name": "features", "value": ""}',
         b'{"name": "keyinit", "value": "12345678901234567890"}', b'{"name": "password", "value": "c2VjcmV0"}',
         b'{"name": "agentupdate", "value": "http://127.0.0.1:9/x.tar.gz,d41d8cd98f00b204e9800998ecf8427e"}',
         b'{"name": "version", "value": {"a": [1, 2.5, null, true, "\\u00e9"]}}', b'[{"name": "version"}]']


def mutated_bodies(count: int, seed: int) -> Iterator[bytes]:
    """Byte-level mutations of valid bodies, and random bytes: what a broken or hostile host could write."""
    rng = random.Random(seed)
    for _ in range(count):
        if rng.random() < 0.1:
            yield rng.randbytes(rng.randrange(0, 600))
            continue
        body = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randint(1, 6)):
            where = rng.randrange(len(body) + 1)
            choice = rng.randrange(6)
            if choice == 0 and body:
                body[min(where, len(body) - 1)] ^= 1 << rng.randrange(8)
            elif choice == 1:
                body[where:where] = rng.randbytes(rng.randint(1, 8))
            elif choice == 2:
                del body[where:where + rng.randint(1, 8)]
            elif choice == 3:
                body[where:where] = body[:rng.randint(0, len(body))]  # repeat a prefix: nesting grows
            elif choice == 4:
                other = rng.choice(SEEDS)
                body[where:] = other[rng.randrange(len(other) + 1):]
            else:
                body[where:where] = rng.choice([b"[", b"{", b'"\\ud800"', b"\\", b'"', b",", b"\xff", b"\xc3"])
        yield bytes(body[:MAX_BODY])


@dataclass
class FloodResult:
    sent: int = 0
    answered: int = 0
    returncodes: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Replies that break the protocol: not JSON, not an object, a returncode outside RETURNCODES, ...
    bad: list[str] = field(default_factory=list)


def flood(xenstore: XenStore, bodies: Iterable[bytes], window: int = 300, timeout: float = 60.0) -> FloodResult:
    """Write each body to ``data/host/f<n>`` as raw bytes, keeping at most ``window`` unanswered, read every
    reply as the host does and remove it (a host that cleans up after itself, as XenStore's quota needs).

    ``xenstore`` is a dom0 connection rooted at the guest's home. Gives up waiting after ``timeout``
    seconds without a reply (the agent died or hangs): the result then shows requests unanswered.
    """
    result = FloodResult()
    prefix = GUEST_DIR + "/"
    xenstore.watch(GUEST_DIR, "fuzz")
    outstanding: set[str] = set()

    def collect() -> bool:
        event = xenstore.next_event(timeout)
        if event is None:
            return False
        path = event[0]
        request_id = path[len(prefix):]
        if not path.startswith(prefix) or request_id not in outstanding:
            return True
        answer = xenstore.read(path)
        if not answer:
            return True
        outstanding.discard(request_id)
        xenstore.delete(path)
        result.answered += 1
        try:
            reply = json.loads(answer)
        except ValueError:
            result.bad.append(f"{request_id}: not JSON: {answer[:80]!r}")
            return True
        if (not isinstance(reply, dict) or set(reply) != {"returncode", "message"}
                or not isinstance(reply["message"], str) or reply["returncode"] not in RETURNCODES):
            result.bad.append(f"{request_id}: {answer[:120]!r}")
            return True
        result.returncodes[reply["returncode"]] += 1
        return True

    for number, body in enumerate(bodies):
        while len(outstanding) >= window:
            if not collect():
                return result
        request_id = f"f{number}"
        path = f"{HOST_DIR}/{request_id}"
        # Any bytes at all, as a broken host could write them (pyxs itself only writes 7-bit text).
        xenstore._raw(Op.WRITE, xenstore.absolute(path).encode() + NUL + body, path)
        outstanding.add(request_id)
        result.sent += 1
    while outstanding and collect():
        pass
    return result
