"""Text from outside (status messages, notes, display names, names in files) made safe for
the two places it goes: a terminal and a database.

A terminal obeys control characters: a message holding ESC, CR or LF could move the
cursor, recolour or forge whole lines of somebody else's ``baton status list``. A
database refuses what is not text: a lone surrogate (a byte that was not UTF-8, carried
by Python's ``surrogateescape``) cannot be encoded, and PostgreSQL cannot store NUL."""

from __future__ import annotations

import re

# C0 and DEL and C1 (Cc), lone surrogates (Cs), the line and paragraph separators (Zl, Zp)
# and the bidirectional controls that reorder what a terminal shows (Trojan Source)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029"
                     "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# what a database cannot keep: lone surrogates (not encodable as UTF-8) and NUL
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): the byte
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` for a terminal: every control character shown escaped (``\\x1b``, ``\\n``,
    ``\\u202e``; a byte that was not UTF-8 as ``\\xff``), everything else as it is. ``None``
    is the empty string."""
    if text is None:
        return ""
    return _UNSAFE.sub(_escape, text if isinstance(text, str) else str(text))


def storable(text: str) -> str:
    """``text`` with what no database can keep (lone surrogates, NUL) replaced by U+FFFD,
    so that the rest of it is kept."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored as it is (for input that is refused rather than
    repaired), or None."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    code, at = ord(match.group()), match.start()
    if code == 0:
        return f"contains a NUL character at position {at}"
    if 0xDC80 <= code <= 0xDCFF:
        return f"is not valid UTF-8 (byte 0x{code - 0xDC00:02x} at position {at})"
    return f"contains a lone surrogate (\\u{code:04x}) at position {at}"
