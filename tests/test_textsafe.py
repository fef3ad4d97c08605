"""Text from instances (step output, console logs) shown on the operator's terminal."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudinitd.textsafe import for_terminal, line_for_terminal

CASES = [
    # (written by the instance, what the terminal gets)
    ("ok\n", "ok\n"),
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("\x1b]52;c;cm0gLXJmIH4=\x07after", "after"),  # OSC 52: set the clipboard
    ("\x1b]0;new title\x1b\\after", "after"),  # OSC 0 ended by ST: retitle the window
    ("\x1b[2J\x1b[Hclean", "clean"),  # CSI: clear the screen, cursor home
    ("\x9b31mred", "red"),  # the 8-bit CSI
    ("\x1bcreset", "reset"),  # ESC c: reset the terminal
    ("\x1b(Bplain", "plain"),  # a short ESC form with an intermediate byte
    ("secret\rshown", "secret\nshown"),  # CR would overprint the line
    ("line\r\n", "line\n"),  # CRLF is a newline
    ("a\u202eb", "ab"),  # right-to-left override: reorders what follows
    ("zero\u200bwidth\ufeff", "zerowidth"),  # zero-width space, BOM
    ("bell\x07 nul\x00 del\x7f", "bell nul del"),
    ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink
    ("unterminated \x1b]0;title", "unterminated "),  # an OSC left open eats the rest
    ("ünïcödé ✓ 中文", "ünïcödé ✓ 中文"),
]


@pytest.mark.parametrize(("written", "shown"), CASES, ids=range(len(CASES)))
def test_escape_sequences_and_controls_are_removed(written, shown):
    assert for_terminal(written) == shown


def test_one_line_for_a_table_cell():
    assert line_for_terminal("a\tb\nc\r\x1b[31md  ") == "a b c d"


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=60))
def test_nothing_that_drives_a_terminal_survives_any_text(text):
    shown = for_terminal(text)
    for ch in shown:
        assert ch in "\n\t" or unicodedata.category(ch) != "Cc", repr(shown)
        assert not 0x202A <= ord(ch) <= 0x202E and not 0x2066 <= ord(ch) <= 0x2069, repr(shown)
        assert ch not in "\u200b\u200c\u200d\u200e\u200f\ufeff", repr(shown)
    assert "\r" not in shown and "\x1b" not in shown


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(st.characters(whitelist_categories=["L", "N", "P", "S", "Zs"]), max_size=60))
def test_ordinary_text_is_left_as_it_is(text):
    assert for_terminal(text) == text
