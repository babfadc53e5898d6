"""A network description: nova's vm-data network data as an operator writes it, read and checked as the agent will."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.errors import NetworkDataError
from agent.network import description
from agent.network.description import (
    FORMAT,
    INTERFACE_NAME,
    check_key,
    is_interface_name,
    load_network_description,
    mac_key,
)

PUBLIC = {"label": "public", "mac": "fa:16:3e:0a:1b:2c", "gateway": "203.0.113.1",
          "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1"}], "dns": ["198.51.100.53"]}
PRIVATE = {"label": "private", "mac": "FA:16:3E:99:88:77",
           "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0", "enabled": "1"}]}


def load(document: Any) -> tuple[dict[str, Any], str | None]:
    return load_network_description(document if isinstance(document, str) else json.dumps(document))


@pytest.mark.parametrize("document", [
    pytest.param({"networking": {"fa163e0a1b2c": PUBLIC, "FA163E998877": PRIVATE}, "hostname": "web-1"}, id="keyed"),
    pytest.param({"networking": [PUBLIC, PRIVATE], "hostname": " web-1 "}, id="list"),
])
def test_both_forms_give_the_entries_keyed_as_nova_keys_them(document: Any) -> None:
    """An object keyed by MAC and a list give the same entries, each keyed by its MAC without colons with the
    case nova's ``replace(':', '')`` keeps; the host name is trimmed."""
    assert load(document) == ({"fa163e0a1b2c": PUBLIC, "FA163E998877": PRIVATE}, "web-1")


@pytest.mark.parametrize(("document", "hostname"), [
    pytest.param([PUBLIC], None, id="bare-list"),
    pytest.param({"networking": [PUBLIC]}, None, id="no-hostname"),
    pytest.param({"networking": [PUBLIC], "hostname": None}, None, id="null-hostname"),
    pytest.param({"networking": [PUBLIC], "hostname": "  "}, None, id="blank-hostname"),
])
def test_a_description_without_a_host_name(document: Any, hostname: str | None) -> None:
    """A bare list, or an object without (or with an empty) host name, gives None: the agent keeps the name."""
    assert load(document) == ({"fa163e0a1b2c": PUBLIC}, hostname)


@pytest.mark.parametrize(("content", "message"), [
    pytest.param('{"networking": [', "the description is not JSON (Expecting value: line 1 column 17 (char 16))",
                 id="not-json"),
    pytest.param('"eth0"', "the description must be a JSON object with 'networking', or a list of entries",
                 id="not-an-object"),
    pytest.param({"hostname": "web-1"}, "the description has no 'networking' (an object keyed by MAC without "
                 "colons, or a list of nova's entries)", id="no-networking"),
    pytest.param({"networking": [PUBLIC], "hostnme": "web-1"}, "unknown key 'hostnme' in the description; it "
                 "holds 'networking' and, optionally, 'hostname'", id="unknown-key"),
    pytest.param({"networking": [PUBLIC], "hostname": 5}, "'hostname' must be a string", id="hostname-not-text"),
    pytest.param({"networking": "eth0"}, "'networking' must be an object keyed by MAC without colons, or a list "
                 "of entries", id="networking-not-a-collection"),
    pytest.param({"networking": []}, "'networking' names no interface; give nova's entry for each interface to "
                 "configure", id="empty"),
    pytest.param({"networking": {}}, "'networking' names no interface; give nova's entry for each interface to "
                 "configure", id="empty-object"),
    pytest.param({"networking": {"fa:16:3e:0a:1b:2c": PUBLIC}}, "networking key 'fa:16:3e:0a:1b:2c' is not a MAC "
                 "without colons (12 hex digits), as nova writes the keys of vm-data/networking", id="colon-key"),
    pytest.param({"networking": {"fa163e0a1b2c ": PUBLIC}}, "networking key 'fa163e0a1b2c ' is not a MAC "
                 "without colons (12 hex digits), as nova writes the keys of vm-data/networking", id="spaced-key"),
    pytest.param({"networking": {"fa163e998877": PUBLIC}}, "networking['fa163e998877'] is the entry of MAC "
                 "fa:16:3e:0a:1b:2c; its key must be that MAC without colons", id="key-not-its-mac"),
    pytest.param({"networking": {"fa163e0a1b2c": "{}"}}, "networking['fa163e0a1b2c'] is not a JSON object",
                 id="keyed-entry-not-an-object"),
    pytest.param([PUBLIC, 5], "networking[1] is not a JSON object", id="listed-entry-not-an-object"),
    pytest.param([PUBLIC, {**PUBLIC, "mac": "FA:16:3E:0A:1B:2C"}], "networking[1] repeats the MAC "
                 "FA:16:3E:0A:1B:2C of an earlier entry", id="repeated-mac"),
    pytest.param('{"networking": [], "networking": []}', "the description repeats the key 'networking' in one "
                 "object", id="repeated-key"),
    pytest.param([{"label": "x"}], "networking[0] has no valid 'mac' (six hex pairs, colon-separated; got None)",
                 id="no-mac"),
    pytest.param([{"mac": "fa:16:3e:0a:1b"}], "networking[0] has no valid 'mac' (six hex pairs, colon-separated; "
                 "got 'fa:16:3e:0a:1b')", id="short-mac"),
    pytest.param([{**PUBLIC, "gateway": "203.0.113.300"}], "vm-data/networking/fa163e0a1b2c: 'gateway' is not an "
                 "IPv4 address (got '203.0.113.300')", id="bad-address"),
    pytest.param({"networking": [PUBLIC], "hostname": "web_1"}, "vm-data/hostname is not a valid host name (got "
                 "'web_1')", id="bad-hostname"),
    pytest.param('[{"mac": "fa:16:3e:0a:1b:2c", "label": NaN}]', "the description holds NaN, which is not JSON",
                 id="nan"),
    pytest.param("[" * 100_000, "the description is nested too deeply to be network data", id="too-deep"),
])
def test_a_bad_description_says_what_is_wrong(content: Any, message: str) -> None:
    """Every mistake is a NetworkDataError saying what is wrong, in the agent's words where the agent checks it."""
    with pytest.raises(NetworkDataError) as raised:
        load(content)
    assert str(raised.value) == message


@pytest.mark.parametrize(("text", "key"), [
    ("fa:16:3e:0a:1b:2c", "fa163e0a1b2c"),
    ("FA:16:3E:0A:1B:2C", "FA163E0A1B2C"),
    (" fa-16-3e-0a-1b-2c\n", "fa163e0a1b2c"),
    ("fa16.3e0a.1b2c", "fa163e0a1b2c"),
    ("fa163e0a1b2c", "fa163e0a1b2c"),
    ("fa:16:3e:0a:1b", None),
    ("fa:16:3e:0a:1b:2c:3d", None),
    ("fa:16:3e:0a:1b:2g", None),
    ("fa::16:3e:0a:1b:2c", None),
    ("", None),
])
def test_mac_key(text: str, key: str | None) -> None:
    """A MAC's key: its twelve hex digits, case kept, whatever separates them; None for anything else."""
    assert mac_key(text) == key


def test_check_key_takes_only_a_mac_without_separators() -> None:
    check_key("FA163E0A1B2C")
    for key in ("fa:16:3e:0a:1b:2c", "fa-16-3e-0a-1b-2c", "fa163e0a1b2", " fa163e0a1b2c", "eth0"):
        with pytest.raises(NetworkDataError, match="is not a MAC without colons"):
            check_key(key)


@pytest.mark.parametrize(("name", "valid"), [
    ("eth0", True), ("enp0s3.100", True), ("br-lan", True), ("a" * 15, True), ("a" * 16, False), ("", False),
    ("-eth0", False), ("eth/0", False), ("eth:0", False), ("eth 0", False), ("eth0\n", False),
])
def test_is_interface_name(name: str, valid: bool) -> None:
    assert is_interface_name(name) is valid


def test_the_interface_name_is_the_one_the_agent_applies_to() -> None:
    """The pattern is the network port's (which this pure module cannot import): the two must not drift."""
    from agent.platform import network

    assert INTERFACE_NAME.pattern == network._INTERFACE.pattern


def test_the_format_is_the_docstrings_paragraph_and_its_example_is_valid() -> None:
    """FORMAT, which the commands' help quotes, is the module docstring's paragraph on one line, and the entry
    it shows is one the agent accepts."""
    assert description.__doc__ is not None
    assert FORMAT.startswith("The description is JSON: an object {\"networking\": ..., \"hostname\": \"web-1\"}")
    assert " ".join(description.__doc__.split()).count(FORMAT) == 1
    example = re.fullmatch(r".*, e\.g\. (\{.*\})\.", FORMAT)
    assert example is not None
    entry = json.loads(example.group(1))
    assert load({"networking": [entry], "hostname": "web-1"}) == ({"fa163e0a1b2c": entry}, "web-1")


def test_the_module_is_pure() -> None:
    """Importing it loads nothing of the agent's but agent.errors, agent.jsontext and agent.network.model: no
    XenStore, no pyxs, no host side, no platform."""
    code = ("import sys, agent.network.description; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('agent', 'pyxs')))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                            cwd=Path(__file__).parents[2]).stdout.split()
    assert loaded == ["agent", "agent.errors", "agent.jsontext", "agent.network", "agent.network.description",
                      "agent.network.model"]
