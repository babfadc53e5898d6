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
    # Past the interpreter's recursion limit: json raises RecursionError, not ValueError.
    (b"[" * 1000 + b"]" * 1000, None, "500", "Request is malformed: nested deeper than 32 levels"),
    (b'{"a":' * 1500 + b"1" + b"}" * 1500, None, "500", "Request is malformed: nested deeper than 32 levels"),
    # Below the recursion limit but past the agent's own: nothing deeper travels further.
    (b'{"name": "version", "value": ' + b"[" * 32 + b"]" * 32 + b"}", None, "500",
     "Request is malformed: nested deeper than 32 levels"),
    (b'{"name": "version", "value": ' + b"[" * 31 + b"]" * 31 + b"}", "version", None, None),
    # Lone surrogates are valid JSON escapes but not Unicode: no UTF-8 text, row or hash can hold them.
    (b'{"name":"\\ud800","value":""}', None, "500",
     "Request is malformed: text is not valid Unicode (a lone surrogate)"),
    (b'{"name":"version","value":{"\\udfff": 1}}', None, "500",
     "Request is malformed: text is not valid Unicode (a lone surrogate)"),
    (b'{"name":"version","value":["ok", "\\ud83d"]}', None, "500",
     "Request is malformed: text is not valid Unicode (a lone surrogate)"),
    (b'{"name":"\\ud83d\\ude00"}', "\U0001f600", None, None),  # a surrogate pair is one valid character
    (b'{"name":"version","value":1' + b"0" * 5000 + b"}", None, "500", "Request is malformed"),
    (b'{"name":"version","value":1e999}', "version", None, None),
    (b"\xed\xa0\x80", None, "500", "Request is malformed"),  # a surrogate encoded in UTF-8 bytes
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


def test_answerable_ids_fit_the_reply_path() -> None:
    """An id whose data/guest path would pass XenStore's 2048-byte limit is known unanswerable beforehand."""
    longest = protocol.MAX_RELATIVE_PATH - len(protocol.GUEST_DIR) - 1
    assert protocol.answerable("a" * longest)
    assert not protocol.answerable("a" * (longest + 1))


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
