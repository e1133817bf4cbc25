"""LaTeX escaping for report tables.

The LaTeX Jinja environment escapes every variable it prints with ``latex_escape``; values that are
already LaTeX (built in Python from escaped parts) are wrapped in ``TexSafe`` to pass through as is.
"""

from __future__ import annotations

from typing import Any

# One pass over the characters, so the braces of an inserted \textbackslash{} are never re-escaped.
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # outside math mode the default OT1 font prints < and > as inverted punctuation
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    # a blank line inside a tabular is a paragraph break (an error); line breaks become spaces
    "\n": " ",
    "\r": " ",
}


class TexSafe(str):
    """A string that is already valid LaTeX and must not be escaped again."""


def latex_escape(text: Any) -> str:
    """Escape LaTeX's special characters \\ & % $ # _ { } ~ ^ (and < >); line breaks become spaces; None -> ""."""
    if text is None:
        return ""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def tex_finalize(value: Any) -> str:
    """Jinja ``finalize`` hook: escape everything printed, except TexSafe values."""
    if isinstance(value, TexSafe):
        return value
    return latex_escape(value)
