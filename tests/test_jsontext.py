"""JSON from outside: the nesting is bounded before the parser recurses, and measured exactly."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import pytest

from agent import jsontext


def nested(depth: int, rng: random.Random) -> Any:
    """A document exactly ``depth`` levels deep, with brackets, quotes and escapes inside its strings."""
    value: Any = rng.choice(['a "[{" b', "\\]}", "plain", 7, None, '\\"[[['])
    for _ in range(depth):
        value = [value, "]]}}"] if rng.random() < 0.5 else {'k"{': value, "[": "\\"}
    return value


@pytest.mark.parametrize("seed", range(40))
def test_the_measure_is_the_depth_the_parser_reaches(seed: int) -> None:
    """For valid JSON the measure agrees with the real depth, whatever brackets, quotes and escapes its strings
    hold: a document at the limit parses, one level more is TooDeep."""
    rng = random.Random(seed)
    depth = rng.randrange(1, 60)
    text = json.dumps(nested(depth, rng))
    assert jsontext.loads(text, depth) == json.loads(text)
    with pytest.raises(jsontext.TooDeep, match=f"nested deeper than {depth - 1} levels"):
        jsontext.loads(text, depth - 1)


@pytest.mark.parametrize("text", [
    "[" * 100_000,
    '{"a":' * 100_000,
    "[" * 40 + '"' + "[" * 100_000,  # an unterminated string: the brackets before it still count
    "[" * 40 + '"' + '\\"' * 100_000,  # full of escaped quotes, which once made the measure quadratic
    "[" * 40 + '"' + "]" * 40,
])
def test_text_far_deeper_than_the_interpreter_allows_is_refused_without_recursing(text: str) -> None:
    """Text nested past the interpreter's recursion limit is TooDeep, never a RecursionError, even when the
    interpreter is already deep in the stack."""
    def at_depth(levels: int) -> None:
        if levels:
            return at_depth(levels - 1)
        with pytest.raises(jsontext.TooDeep):
            jsontext.loads(text, 32)

    at_depth(sys.getrecursionlimit() - 100)


@pytest.mark.parametrize(("text", "error"), [
    (b"\xff[]", UnicodeDecodeError),
    ("[1, 2", json.JSONDecodeError),
    ('"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["', None),
])
def test_other_problems_stay_value_errors(text: str | bytes, error: type[Exception] | None) -> None:
    """Bytes that are not UTF-8 and text that is not JSON raise the parser's own ValueError; brackets inside a
    string do not count as nesting."""
    if error is None:
        assert jsontext.loads(text, 1) == text.strip('"')  # type: ignore[union-attr]
    else:
        with pytest.raises(error):
            jsontext.loads(text, 32)
