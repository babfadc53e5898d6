"""Request parsing and reply building, without XenStore."""

from __future__ import annotations

import pytest

from agent import protocol


@pytest.mark.parametrize(("body", "name", "code", "message"), [
    (b'{"name": "version", "value": "agent"}', "version", None, None),
    (b'{"name": "features"}', "features", None, None),
    (b"\xff\xfe", None, "500", "Request is malformed"),
    (b"", None, "500", "Request is malformed"),
    (b"{}", None, "500", "Request is missing 'name' key"),
    (b"1", None, "500", "Request is malformed: expected a JSON object, got int"),
    (b'{"name": ["version"]}', None, "500", "Request is malformed: 'name' must be a string, got list"),
])
def test_parse(body: bytes, name: str | None, code: str | None, message: str | None) -> None:
    """Each body parses to its command name, or carries the exact rejection the protocol prescribes."""
    request = protocol.parse("id", body)
    assert request.name == name
    if code is None:
        assert request.rejection is None
    else:
        assert request.rejection is not None
        assert (request.rejection.returncode, request.rejection.message) == (code, message)


def test_digest_identifies_the_body_without_holding_it() -> None:
    """The same body gives the same digest, a different body another; the digest is not the body."""
    first = protocol.parse("a", b'{"name": "password", "value": "c2VjcmV0"}').digest
    assert first == protocol.parse("b", b'{"name": "password", "value": "c2VjcmV0"}').digest
    assert first != protocol.parse("a", b'{"name": "password", "value": "b3RoZXI="}').digest
    assert "c2VjcmV0" not in first


def test_reply_message_is_bounded() -> None:
    """A reply stays far below XenStore's 2048-byte node limit, whatever the message."""
    encoded = protocol.encode(protocol.reply("500", "x" * 5000))
    assert len(encoded) < 1100


def test_long_or_strange_names_are_quoted_safely() -> None:
    """Names in messages are cut and escaped, so a reply never carries control characters or huge text."""
    rejection = protocol.unknown_command("a\nb" + "c" * 200)
    assert "\n" not in rejection.message
    assert len(rejection.message) < 120
    assert rejection.returncode == "404"


def test_encode_is_ascii_json() -> None:
    """pyxs writes only 7-bit values: non-ASCII text is escaped."""
    assert protocol.encode({"message": "\u00e9"}) == '{"message": "\\u00e9"}'
