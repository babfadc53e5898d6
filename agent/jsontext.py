"""JSON text from outside the agent, parsed with its nesting bounded before the parser sees it.

``json.loads`` recurses once per array or object level. Text nested a few thousand levels deep makes it
raise RecursionError near the interpreter's limit, and anything else that runs at that depth (a finaliser,
a logging handler formatting a traceback) fails too, in places no ``except`` reaches. So the depth is
measured first, without recursion, and text nested deeper than the caller allows is refused with
``TooDeep`` (a ValueError, like every other reason the text is not usable JSON).

The measure counts the brackets outside strings. For the part of the text the parser reads before it
stops, that is exactly the depth it would reach, so no text passes here and then recurses deeper.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: A JSON string, escapes included. One left unterminated runs to the end of the text: the parser stops there
#: anyway, and a pattern that had to find a closing quote would try again from every quote after it
#: (quadratic: 14 s for 64 KB of escaped quotes).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class TooDeep(ValueError):
    """The text nests arrays and objects deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


def depth_exceeds(text: str, limit: int) -> bool:
    """Whether ``text`` nests arrays and objects more than ``limit`` levels deep (outside its strings)."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the usual case: too few brackets to matter, and no scan
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match[0] in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads(text: str | bytes, limit: int, **options: Any) -> Any:
    """``json.loads(text, **options)`` for text nested at most ``limit`` levels; TooDeep otherwise.
    Bytes must be UTF-8 (UnicodeDecodeError, also a ValueError, otherwise)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if depth_exceeds(text, limit):
        raise TooDeep(limit)
    return json.loads(text, **options)
