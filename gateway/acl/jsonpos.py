"""Line numbers for JSON pointers, so that errors can say ``policy.json:12``.

The stdlib decoder gives values but not where they were. This scanner walks the
same text once more (after ``json.loads`` accepted it) and records the line of each
value by its JSON pointer (RFC 6901), and object keys given twice, which ``json``
would silently collapse to the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]  # stdlib, untyped

_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")


def pointer_token(key: str | int) -> str:
    """Escape one reference token (RFC 6901 section 3)."""
    return str(key).replace("~", "~0").replace("/", "~1")


def join_pointer(parts: list[str | int] | tuple[str | int, ...]) -> str:
    return "".join("/" + pointer_token(p) for p in parts)


@dataclass(slots=True)
class Positions:
    """Line (1-based) of every value by pointer; duplicate keys as (pointer, line)."""

    lines: dict[str, int] = field(default_factory=dict)
    duplicates: list[tuple[str, int]] = field(default_factory=list)

    def line_of(self, pointer: str) -> int | None:
        """The line of ``pointer`` or of its nearest recorded ancestor."""
        while True:
            if pointer in self.lines:
                return self.lines[pointer]
            if not pointer:
                return None
            pointer = pointer.rsplit("/", 1)[0]


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.out = Positions()

    def line(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def ws(self) -> None:
        m = _WS.match(self.text, self.pos)
        self.pos = m.end() if m else self.pos

    def value(self, pointer: str) -> None:
        self.ws()
        self.out.lines.setdefault(pointer, self.line(self.pos))
        c = self.text[self.pos]
        if c == "{":
            self.obj(pointer)
        elif c == "[":
            self.arr(pointer)
        elif c == '"':
            _, self.pos = scanstring(self.text, self.pos + 1)
        else:
            m = _SCALAR.match(self.text, self.pos)
            if m is None:  # json.loads accepted it, so this is NaN/Infinity
                m = re.compile(r"-?Infinity|NaN").match(self.text, self.pos)
                assert m is not None
            self.pos = m.end()

    def obj(self, pointer: str) -> None:
        self.pos += 1
        seen: set[str] = set()
        self.ws()
        if self.text[self.pos] == "}":
            self.pos += 1
            return
        while True:
            self.ws()
            key_line = self.line(self.pos)
            key, self.pos = scanstring(self.text, self.pos + 1)
            child = pointer + "/" + pointer_token(key)
            if key in seen:
                self.out.duplicates.append((child, key_line))
            seen.add(key)
            self.out.lines[child] = key_line
            self.ws()
            self.pos += 1  # ':'
            self.value(child)
            self.ws()
            c = self.text[self.pos]
            self.pos += 1
            if c == "}":
                return

    def arr(self, pointer: str) -> None:
        self.pos += 1
        self.ws()
        if self.text[self.pos] == "]":
            self.pos += 1
            return
        i = 0
        while True:
            self.value(f"{pointer}/{i}")
            i += 1
            self.ws()
            c = self.text[self.pos]
            self.pos += 1
            if c == "]":
                return


def scan_positions(text: str) -> Positions:
    """Positions of a text that ``json.loads`` already accepted."""
    s = _Scanner(text)
    s.value("")
    return s.out
