"""Text from instances made safe to show on the operator's terminal.

A console log or a step's output is written by whatever runs in the
instance. Printed as is, its escape sequences could retitle the terminal,
rewrite what is already on screen, set the clipboard (OSC 52), or hide a
line behind a carriage return. `for_terminal` removes every escape
sequence (CSI, OSC, DCS, SOS, PM, APC and the short ESC forms, 7- and 8-bit)
and every other control character except newline and tab, and also the
Unicode controls that reorder or hide text (bidi overrides, zero-width).
"""

from __future__ import annotations

import re
import unicodedata

_ESCAPE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?          # CSI ... final byte
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])       # OSC, DCS, SOS, PM, APC ...
        [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)?      # ... up to BEL or ST (or the end)
    | \x1b [ -/]* [0-~]?                            # the short ESC forms (ESC c, ESC ( B)
    """,
    re.VERBOSE,
)
_KEEP = {"\n", "\t"}
# Format characters that move or hide text: bidi embeddings, overrides and
# isolates, zero-width joiners and spaces, the BOM.
_HIDING = {chr(c) for c in (*range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_HIDING.add("\ufeff")


def for_terminal(text: str) -> str:
    """`text` without escape sequences or control characters (newlines and tabs kept).

    A carriage return that ends a line (CRLF) is dropped; any other one
    becomes a newline, so nothing written after it can overprint a line.
    """
    text = _ESCAPE.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        ch for ch in text if ch in _KEEP or (unicodedata.category(ch) != "Cc" and ch not in _HIDING)
    )


def line_for_terminal(text: str) -> str:
    """One line of `text` for the terminal: as for_terminal, with newlines and tabs as spaces."""
    return " ".join(for_terminal(text).split())
