"""Tokenizer for Calico label selectors, with the column of every token.

Mirrors libcalico-go ``lib/selector/tokenizer/tokenizer.go`` (v3.32.1) rule for rule, including
its quirks:

- only space and tab are whitespace (a newline is an error, as in Calico);
- a word operator (``contains``, ``in``, ``not in``, ``starts with``, ``ends with``) is only
  recognised directly after a label; anywhere else the same word is a label;
- ``startswith``/``endswith``/``notin`` are accepted as single words; for the two-word forms the
  word-boundary check happens *after* the whitespace following the last word, so
  ``a starts with b`` fails in the tokenizer rather than in the parser;
- ``has(``, ``all(`` and ``global(`` must be written without a space before ``(``;
- string literals have no escapes: a literal ends at the next matching quote;
- label keys are ``[A-Za-z0-9_./-]+`` and at most 512 characters (``MaxLabelLength``).

Calico reports errors without a position; we add a 1-based column so users can find the problem.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from tracer.errors import InputError, quote

MAX_LABEL_LENGTH = 512  # tokenizer.MaxLabelLength

_IDENT = re.compile(r"[A-Za-z0-9_./-]*", re.ASCII)  # tokenizer.identifierChar
_WHITESPACE = " \t"  # tokenizer.trimWhitespace: nothing else counts


class SelectorError(InputError, ValueError):
    """A selector that Calico would reject; ``column`` is 1-based in the selector text."""

    def __init__(self, message: str, column: int, text: str = ""):
        self.message = message
        self.column = column
        self.text = text
        super().__init__(f"column {column}: {message}")


class Tok(enum.Enum):
    """Token kinds, as tokenizer.Kind (the value is how errors describe the token)."""

    LABEL = "label"
    STRING = "a quoted string"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    EQ = "'=='"
    NE = "'!='"
    IN = "'in'"
    NOT = "'!'"
    NOT_IN = "'not in'"
    CONTAINS = "'contains'"
    STARTS_WITH = "'starts with'"
    ENDS_WITH = "'ends with'"
    ALL = "'all()'"
    HAS = "has()"
    LPAREN = "'('"
    RPAREN = "')'"
    AND = "'&&'"
    OR = "'||'"
    GLOBAL = "'global()'"
    EOF = "end of selector"


@dataclass(frozen=True, slots=True)
class Token:
    """One token; ``pos`` is its 0-based offset in the selector text."""

    kind: Tok
    value: str
    pos: int

    def describe(self) -> str:
        """How error messages name this token."""
        if self.kind is Tok.LABEL:
            return f'label "{self.value}"'
        if self.kind is Tok.HAS:
            return f"'has({self.value})'"
        return self.kind.value


_SINGLE_CHAR = {
    "(": Tok.LPAREN,
    ")": Tok.RPAREN,
    "{": Tok.LBRACE,
    "}": Tok.RBRACE,
    ",": Tok.COMMA,
}
_DOUBLE_CHAR = {"=": ("==", Tok.EQ), "&": ("&&", Tok.AND), "|": ("||", Tok.OR)}

# Operators tried after a label, in tokenizer.go's order.
_LABEL_OPERATORS: tuple[tuple[tuple[str, ...], Tok], ...] = (
    (("contains",), Tok.CONTAINS),
    (("starts", "with"), Tok.STARTS_WITH),
    (("ends", "with"), Tok.ENDS_WITH),
    (("not", "in"), Tok.NOT_IN),
    (("in",), Tok.IN),
)
_OPERATOR_LIST = "==, !=, in, not in, contains, starts with, ends with"


def tokenize(text: str) -> list[Token]:
    """Split a selector into tokens; the list always ends with an EOF token."""
    return _Lexer(text).run()


class _Lexer:
    """Single pass over the text; raises SelectorError at the first problem."""

    def __init__(self, text: str):
        self.text = text
        self.tokens: list[Token] = []

    def error(self, pos: int, message: str) -> SelectorError:
        return SelectorError(message, pos + 1, self.text)

    def skip_ws(self, pos: int) -> int:
        text = self.text
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        return pos

    def run(self) -> list[Token]:
        text, tokens = self.text, self.tokens
        pos = 0
        while True:
            pos = self.skip_ws(pos)
            if pos >= len(text):
                tokens.append(Token(Tok.EOF, "", len(text)))
                return tokens
            char = text[pos]
            if char in _SINGLE_CHAR:
                tokens.append(Token(_SINGLE_CHAR[char], "", pos))
                pos += 1
            elif char in "\"'":
                pos = self.string_literal(pos, char)
            elif char in _DOUBLE_CHAR:
                pos = self.double_char(pos, char)
            elif char == "!":
                is_ne = text.startswith("!=", pos)
                tokens.append(Token(Tok.NE if is_ne else Tok.NOT, "", pos))
                pos += 2 if is_ne else 1
            elif tokens and tokens[-1].kind is Tok.LABEL:
                pos = self.label_operator(pos)
            else:
                pos = self.word(pos)

    def string_literal(self, pos: int, quote: str) -> int:
        end = self.text.find(quote, pos + 1)
        if end < 0:
            raise self.error(pos, f"unterminated string (no closing {quote})")
        self.tokens.append(Token(Tok.STRING, self.text[pos + 1 : end], pos))
        return end + 1

    def double_char(self, pos: int, char: str) -> int:
        spelled, kind = _DOUBLE_CHAR[char]
        if not self.text.startswith(spelled, pos):
            raise self.error(pos, f"expected '{spelled}'")
        self.tokens.append(Token(kind, "", pos))
        return pos + 2

    def label_operator(self, pos: int) -> int:
        for words, kind in _LABEL_OPERATORS:
            end = self.cut_words(pos, words)
            if end >= 0:
                self.tokens.append(Token(kind, "", pos))
                return end
        label = self.tokens[-1].value
        if self.text[pos].isspace():
            raise self.error(pos, self.describe_bad_char(pos, inside_has=False))
        raise self.error(pos, f'expected an operator ({_OPERATOR_LIST}) after label "{label}"')

    def cut_words(self, pos: int, words: tuple[str, ...]) -> int:
        """End of ``words`` at ``pos`` or -1 (cutPrefixCheckBreak, cutMultiWordPrefixCheckBreak)."""
        text = self.text
        for word in words:
            if not text.startswith(word, pos):
                return -1
            pos += len(word)
            if len(words) > 1:  # the multi-word variant trims after every word, even the last
                pos = self.skip_ws(pos)
        if pos < len(text) and _IDENT.match(text, pos, pos + 1).end() > pos:
            return -1  # no word boundary
        return pos

    def word(self, pos: int) -> int:
        text = self.text
        if text.startswith("has(", pos):
            return self.has(pos)
        for name, kind in (("all(", Tok.ALL), ("global(", Tok.GLOBAL)):
            if text.startswith(name, pos):
                end = self.skip_ws(pos + len(name))
                if not text.startswith(")", end):
                    raise self.error(end, f"no closing ')' after {name}")
                self.tokens.append(Token(kind, "", pos))
                return end + 1
        label, end = self.identifier(pos)
        self.tokens.append(Token(Tok.LABEL, label, pos))
        return end

    def has(self, pos: int) -> int:
        start = self.skip_ws(pos + len("has("))
        label, end = self.identifier(start, inside_has=True)
        end = self.skip_ws(end)
        if not self.text.startswith(")", end):
            raise self.error(end, "no closing ')' after has(")
        self.tokens.append(Token(Tok.HAS, label, pos))
        return end + 1

    def identifier(self, pos: int, inside_has: bool = False) -> tuple[str, int]:
        end = _IDENT.match(self.text, pos).end()
        if end - pos > MAX_LABEL_LENGTH:
            raise self.error(pos, f"label too long ({end - pos} characters, the limit is 512)")
        if end == pos:
            raise self.error(pos, self.describe_bad_char(pos, inside_has))
        return self.text[pos:end], end

    def describe_bad_char(self, pos: int, inside_has: bool) -> str:
        if pos >= len(self.text):
            return "expected a label name inside has(" if inside_has else "expected a label"
        char = self.text[pos]
        where = "expected a label name inside has(, found" if inside_has else "unexpected character"
        if char.isspace():
            return f"{where} {quote(char)} (only spaces and tabs may separate selector tokens)"
        return f"{where} {quote(char)}"
