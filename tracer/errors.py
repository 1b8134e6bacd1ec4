"""The one error type for bad input: it prints as a single line naming file, object and problem.

Messages echo what the user gave; :func:`quote` is how they do it, so that a 2 MB label value or
a NUL byte in a manifest still gives one short, printable line.
"""

from __future__ import annotations

import reprlib

QUOTE_LIMIT = 60          # characters of an offending value kept in a message
MESSAGE_LIMIT = 400       # characters of a whole message, the last line of defence


def escape(text: str) -> str:
    """``text`` with every non-printable character written as an escape (``\\n``, ``\\x00``)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters: the head, an ellipsis and how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"{text[:limit]}\u2026 ({cut} more characters)"


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """An offending value for an error message: ``repr`` for strings, escaped and shortened.

    >>> quote("a\\x00b")
    "'a\\\\x00b'"
    """
    text = repr(value) if isinstance(value, str) else _BOUNDED.repr(value)
    return shorten(escape(text), limit)


# Containers from a manifest can be deep or huge: repr them only as far as a message shows.
_BOUNDED = reprlib.Repr()
_BOUNDED.maxlevel = 3
_BOUNDED.maxstring = _BOUNDED.maxother = QUOTE_LIMIT


class InputError(Exception):
    """Bad user input. The CLI prints ``str(err)`` and exits with status 2."""

    def __init__(self, problem: str, *, file: str | None = None, obj: str | None = None):
        self.problem = problem
        self.file = file
        self.obj = obj
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(escape(shorten(part, 200)) for part in (self.file, self.obj) if part)
        text = f"{where}: {self.problem}" if where else self.problem
        return shorten(escape(text), MESSAGE_LIMIT)
