"""baton.textsafe: control characters shown escaped on a terminal; what a database cannot
keep replaced (or named, for input that is refused)."""

from __future__ import annotations

import unicodedata

import pytest

from baton.textsafe import printable, storable, unstorable

# the bidirectional classes of the explicit embedding, override and isolate controls
BIDI_CONTROLS = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI", "ALM"}


@pytest.mark.parametrize(("text", "shown"), [
    ("week 12", "week 12"),
    ("naïve \u2013 日本語 ✓ 👩‍🔬", "naïve \u2013 日本語 ✓ 👩‍🔬"),  # text is text, joiner included
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),  # CSI, OSC, BEL
    ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),  # NUL, DEL, C1 (NEL, CSI)
    ("ok\udcff\ud800", "ok\\xff\\ud800"),  # a byte that was not UTF-8, a lone surrogate
    ("\u2028\u202eevil", "\\u2028\\u202eevil"),  # line separator, right-to-left override
    ("C:\\path", "C:\\path"),
    (None, ""),
    (42, "42"),
])
def test_printable_escapes_every_control_character(text: object, shown: str) -> None:
    assert printable(text) == shown


def test_printable_output_holds_no_control_character() -> None:
    """Over every code point of the Basic Multilingual Plane: nothing a terminal obeys or
    reorders is left, and the result is valid UTF-8."""
    out = printable("".join(map(chr, range(0x10000))))
    assert not [ch for ch in out if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
                or unicodedata.bidirectional(ch) in BIDI_CONTROLS]
    out.encode("utf-8")


def test_storable_replaces_what_no_database_keeps() -> None:
    assert (storable("ok \udcff\udcfe \ud800 a\x00b \x1b[1m")
            == "ok \ufffd\ufffd \ufffd a\ufffdb \x1b[1m")  # ESC is text: escaped when shown
    assert storable("week 12") == "week 12"
    storable("\ud800\x00").encode("utf-8")


def test_unstorable_names_the_problem() -> None:
    assert unstorable("fine \x1b") is None
    assert unstorable("ab\udcff") == "is not valid UTF-8 (byte 0xff at position 2)"
    assert unstorable("\ud800") == "contains a lone surrogate (\\ud800) at position 0"
    assert unstorable("a\x00") == "contains a NUL character at position 1"
